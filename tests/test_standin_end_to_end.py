"""Stand-in and store-and-forward with real processes: a private Redis of the test's own that
is killed, frozen and started again on its port and data, a real switch over real TCP, the
journal on disk, the forwarder's replay into the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import subprocess
import time

from protocols.demo import DEMO_POS_MAC
from protocols.framing import BINARY_2
from protocols.iso_client import REQUEST_SHAPES, IsoClient, correlation_id, request_message
from protocols.iso_mac import MacKey
from protocols.messages import AuthRequest, MessageClass
from protocols.pos import DEFAULT_ACQUIRER, DEFAULT_TERMINAL
from switch.config import Config, Listener
from switch.journal import Void, snapshot
from switch.policy_file import default_policy_text
from switch.redis_runner import PrivateRedis, reachable
from tests.support import make_card
from tests.test_policy_support import (
    CHANNEL_CODECS,
    ClientCodec,
    PipeClient,
    policy_switch,
)

DEADLINE_MS = 600  # short, so a frozen Redis costs the test little
WAIT_S = 20.0  # bound on every wait for a condition


def stand_in_policy(enabled: bool = True, per_transaction: int = 1000, per_card: int = 2500
                    ) -> str:
    text = default_policy_text().decode()
    return text.replace("enabled = false", f"enabled = {str(enabled).lower()}").replace(
        "per_transaction_max_fen = 50_000", f"per_transaction_max_fen = {per_transaction}"
    ).replace("per_card_max_fen = 200_000", f"per_card_max_fen = {per_card}")


# --- POS from the client side, as a PipeClient codec -------------------------------------

_stans = itertools.count(time.time_ns() // 1000 % 500_000)
POS_CLIENT = IsoClient(key=MacKey.parse(*DEMO_POS_MAC))  # the demo terminal's key


def pos_request(pan: str, amount_fen: int, mcc: str = "5411") -> AuthRequest:
    """A POS sale; its txn_ref carries STAN-F7 for the client codec below."""
    stan = f"{next(_stans) % 1_000_000:06d}"
    return AuthRequest(message_class=MessageClass.SALE, channel="pos", card=pan,
                       amount_fen=amount_fen, mcc=mcc, txn_ref=f"{stan}-1207120000")


def _pos_encode(r: AuthRequest) -> bytes:
    stan, f7 = r.txn_ref.split("-")
    return POS_CLIENT.encode(request_message(r, stan=stan, transmitted=f7,
                                             terminal=DEFAULT_TERMINAL, acquirer=DEFAULT_ACQUIRER))


POS_CODEC = ClientCodec(BINARY_2,
                        _pos_encode, POS_CLIENT.answer,
                        lambda r: correlation_id(REQUEST_SHAPES[r.message_class][0],
                                                 *r.txn_ref.split("-")))


# --- a Redis of the test's own, killed and brought back on its port and data ---------------


@contextlib.contextmanager
def own_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis", durable=True, appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kill(server: PrivateRedis) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


def bring_back(server: PrivateRedis) -> None:
    """The same redis-server again: same port, same AOF (so the cards are as they were)."""
    server.process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(server.port), "--bind", "127.0.0.1",
         *server.options(), "--dir", str(server.folder),
         "--logfile", str(server.folder / "redis-again.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + WAIT_S
    while not reachable(server.url, timeout_s=0.2):
        assert time.monotonic() < deadline, "redis-server did not come back"
        time.sleep(0.02)


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


def config(tmp_path, channels=("jd",)) -> Config:
    cfg = Config(listeners={name: Listener(port=0) for name in channels})
    cfg.server_limits.request_deadline_ms = DEADLINE_MS
    cfg.journal_dir = str(tmp_path / "run")
    return cfg


@contextlib.asynccontextmanager
async def standing_in(tmp_path, server, policy_text, channels=("jd",)):
    """A switch with a journal in tmp_path/run and clients on `channels`."""
    cfg = config(tmp_path, channels)
    codecs = dict(CHANNEL_CODECS, pos=POS_CODEC)
    async with policy_switch(server.url, policy_text, channels=(), config=cfg) as (
            switch, ledger, clients):
        for name in channels:
            clients.by_channel[name] = await PipeClient.connect(switch.ports[name], codecs[name])
        yield switch, ledger, clients


def journal_records(tmp_path) -> list:
    return [r for path in sorted((tmp_path / "run").glob("saf-*.journal"))
            for r in snapshot(path).records]


# --- stand-in off ---------------------------------------------------------------------------


async def test_off_with_redis_killed_answers_91_within_the_deadline_and_journals_voids(tmp_path):
    with own_redis(tmp_path) as server:
        async with standing_in(tmp_path, server, stand_in_policy(enabled=False)) as (
                _, ledger, clients):
            pan = await make_card(ledger, limit_fen=100_000)
            assert (await clients.send("jd", pan, amount_fen=100)).response.approved
            kill(server)
            began = time.monotonic()
            answers = await asyncio.gather(*[clients.send("jd", pan, amount_fen=100)
                                             for _ in range(5)])
            assert time.monotonic() - began < DEADLINE_MS / 1000
            for answer in answers:
                r = answer.response
                assert (r.response_code, r.reason, r.stand_in) == ("91", "issuer_unavailable",
                                                                   False)
                assert "standIn" not in answer.fields
            records = journal_records(tmp_path)
            assert len(records) == 5 and all(isinstance(r, Void) for r in records)
            assert {r.idempotency_key for r in records} == {
                f"jd:110000001:{a.correlation_id}" for a in answers}
