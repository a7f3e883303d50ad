"""The switch inside a Python test suite: a real switch on free ports, in the test's own event
loop, on a private Redis it starts (or one you give), with a client for every channel.

    from switch import testing

    async def test_a_sale():
        async with testing.start() as switch:
            pan = await switch.new_card(limit_fen=100_000)
            sale = await switch.send("jd", pan, amount=12_800, mcc="5411")
            assert sale.response.response_code == "00"
            refund = await switch.send("jd", pan, type="refund", amount=12_800,
                                       original=sale.correlation_id, lightning=True)
            assert (await switch.card(pan)).open_to_buy == 100_000

With pytest and pytest-asyncio, the fixture `baitiao_switch` (switch/pytest_plugin.py,
installed with the package) yields the same object. docs/testing.md has the whole API.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from protocols.channel import ClientAnswer
from switch.app import build, recorder_for
from switch.channel_client import ChannelClient, Sent
from switch.cli import parser
from switch.clock import Clock, TestClockControl, duration_ms, instant_ms
from switch.config import DEFAULT_PORTS, Config, Listener, Recording
from switch.faults import add_rules, clear_rules, rule_from
from switch.ledger import CardView, Ledger, Repayment
from switch.policy import Policy
from switch.redis_runner import PrivateRedis
from switch.replay_cli import take_snapshot
from switch.scenario_run import fresh_card_number
from switch.server import Switch

CHANNELS = tuple(DEFAULT_PORTS)
TEST_CARD_EXPIRY = "3012"


class EmbeddedSwitch:
    """A running switch and what a test does with it; `server` and `ledger` are the real
    objects, for what the helpers below do not cover."""

    def __init__(self, server: Switch, ledger: Ledger, redis_url: str, host: str) -> None:
        self.server = server
        self.ledger = ledger
        self.redis_url = redis_url
        self.host = host
        self.client = ChannelClient(host, server.ports, send_parser(), ledger)
        # The test clock every worker of this switch follows (when started with it).
        self.clock = EmbeddedClock(TestClockControl(ledger.client), ledger.clock)
        self._sent: dict[str, Sent] = {}  # answer id -> what was sent, for `repeat`

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.server.ports)

    async def new_card(self, limit_fen: int, status: str = "active",
                       expiry: str = TEST_CARD_EXPIRY) -> str:
        """A card with a number no card has yet (tests keep apart by fresh numbers)."""
        pan = await fresh_card_number(self.ledger)
        await self.ledger.set_card(pan, limit_fen=limit_fen, status=status, expiry=expiry)
        return pan

    async def card(self, pan: str) -> CardView | None:
        return await self.ledger.card(pan)

    async def repay(self, pan: str, amount_fen: int, ref: str | None = None) -> Repayment:
        """The card holder repays (docs/testing.md "The card's month"): posted falls and
        open-to-buy rises at once; `ref` makes it idempotent."""
        return await self.ledger.repay(pan, amount_fen, ref)

    async def force(self, pan: str, code: str | None, times: int | None = None,
                    channel: str = "", delay_ms: int = 0) -> None:
        """The card's next `times` requests (every one while None) on `channel` ("" for
        all) answer the declining `code` (reason "forced"), changing nothing; None clears;
        NO_ANSWER and STAND_IN (switch.ledger); `delay_ms` (with "" alone: decided)."""
        if not await self.ledger.force(pan, code, times, channel, delay_ms):
            raise ValueError("no such card")

    async def add_fault(self, **rule) -> None:
        """A fault rule (switch/faults.py: id=..., what it matches, what it does), in force
        in every worker when this returns."""
        await add_rules(self.ledger.client, [rule_from(rule, "add_fault")])

    async def clear_faults(self, rule_id: str | None = None) -> None:
        await clear_rules(self.ledger.client, rule_id)

    async def send(self, channel: str, pan: str, **message) -> ClientAnswer:
        """One request on `channel` (jd, wechat, pos, xpay) for the card `pan`; `message`:
        type (sale, auth, capture, reverse, refund, inquiry), amount (fen), mcc, original
        (the correlation_id of the original's answer), partial, lightning, expiry, merchant,
        atc (x-pay; the card's token is provisioned on its first x-pay request)."""
        sent = await self.client.send(channel, pan, **message)
        self._sent[sent.answer.correlation_id] = sent
        return sent.answer

    async def repeat(self, answer: ClientAnswer) -> ClientAnswer:
        """The request that got `answer`, sent again byte for byte."""
        return (await self.client.resend(self._sent[answer.correlation_id])).answer


class EmbeddedClock:
    """`switch.clock`: the switch's test clock. `advance("36h")` (or ms), `set(
    "2026-12-24T10:00")`, `reset()` return once the switch has the new time; `now_ms()`."""

    def __init__(self, control: TestClockControl, clock: Clock) -> None:
        self.control = control
        self._clock = clock

    def now_ms(self) -> int:
        return self._clock.now_ms()

    async def advance(self, by: str | int) -> None:
        await self.control.advance(duration_ms(by) if isinstance(by, str) else by)

    async def set(self, at: str) -> None:
        await self.control.set(instant_ms(at))

    async def reset(self) -> None:
        await self.control.reset()


def send_parser():
    """The `switch send` argument parser: messages are built exactly as the command builds
    them."""
    return parser().parse_args(["scenario", "run", "-"]).send_parser


@contextlib.asynccontextmanager
async def start(config: Config | None = None, *, redis_url: str | None = None,
                policy: Policy | None = None, clock: Clock | None = None,
                journal_dir: Path | None = None, record_dir: Path | None = None
                ) -> AsyncIterator[EmbeddedSwitch]:
    """A switch on free loopback ports (every channel unless `config` says otherwise), shut
    down on exit. Without `redis_url`, a private throw-away redis-server is started and
    stopped with it. `policy`, `clock`, `journal_dir`: as switch/app.py build takes them;
    without `clock` (nor a `config` without test_clock) the switch follows the test clock
    that `switch.clock` moves. `record_dir`: record as `switch serve --record DIR` does
    (the snapshot first, then every exchange; the files are complete once the block ends)."""
    config = config or Config(listeners={name: Listener(port=0) for name in CHANNELS},
                              test_clock=True)
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="switch-")))
            private = PrivateRedis(folder)
            redis_url = private.start()
            stack.callback(private.stop)
        server, ledger = await build(config, redis_url, clock, policy, journal_dir)
        try:
            if record_dir is not None:
                config = msgspec.structs.replace(config, record=Recording(dir=str(record_dir)))
                await take_snapshot(config, redis_url)
                server.record_to(recorder_for(server, config))
            await server.start()
        except BaseException:
            await ledger.aclose()
            raise
        try:
            yield EmbeddedSwitch(server, ledger, redis_url, "127.0.0.1")
        finally:
            await server.shutdown()
            await ledger.aclose()
