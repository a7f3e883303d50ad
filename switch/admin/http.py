"""The admin HTTP API and the dashboard, on aiohttp, in the switch's own event loop.

aiohttp's server runs on any asyncio loop (uvloop included) and serves these few requests
beside the listeners: a scrape or a card read is one short task between the listeners'
callbacks, never on their path. docs/admin.md lists the endpoints with curl examples.

Reading card data and every change need `Authorization: Bearer <token>`: 401 without one,
403 with a wrong one. Card numbers are masked in every answer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from importlib import resources

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from protocols.cardnumbers import mask_pan
from switch import limits
from switch.admin.exporter import SnapshotCollector
from switch.admin.policy_swap import PolicySource
from switch.cli_common import UserError, resolve_pan
from switch.ledger import Ledger, RepaymentUnconfirmed
from switch.policy_file import PolicyError

log = logging.getLogger("switch.admin")

LEDGER_KEY = web.AppKey("ledger", Ledger)
POLICY_KEY = web.AppKey("policy", PolicySource)
TOKEN_KEY = web.AppKey("token", str)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
PROTECTED = "protected"  # a route's marker: the bearer token is needed


class CardChange(msgspec.Struct, forbid_unknown_fields=True):
    limit_fen: int | None = None
    status: str | None = None
    expiry: str | None = None  # YYMM
    statement_day: int | None = None  # 1..28


class Upgrade(msgspec.Struct, forbid_unknown_fields=True):
    limit_fen: int
    status: str = "active"


class Repay(msgspec.Struct, forbid_unknown_fields=True):
    amount_fen: int
    ref: str | None = None  # the repayment's id (Ledger.repay); None: a new one


def make_app(ledger: Ledger, policy: PolicySource, token: str, snapshot) -> web.Application:
    """`snapshot()`: the counts to export (this process's, or every worker's)."""
    app = web.Application(middlewares=[bearer_auth], client_max_size=limits.admin_body_max_bytes)
    app[LEDGER_KEY], app[POLICY_KEY], app[TOKEN_KEY] = ledger, policy, token
    registry = app[REGISTRY_KEY] = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    open_routes = [web.get("/", dashboard), web.get("/healthz", healthz),
                   web.get("/readyz", readyz), web.get("/metrics", metrics),
                   web.get("/policy", show_policy)]
    guarded = [web.get("/cards/{card}", show_card), web.put("/cards/{card}", change_card),
               web.get("/cards/{card}/transactions", card_transactions),
               web.post("/cards/{account}/upgrade", upgrade_account),
               web.post("/cards/{card}/repay", repay_card),
               web.post("/policy/reload", reload_policy)]
    app.add_routes(open_routes)
    for route in app.router.add_routes(guarded):
        setattr(route.handler, PROTECTED, True)
    return app


@web.middleware
async def bearer_auth(request: web.Request, handler):
    if getattr(request.match_info.route.handler, PROTECTED, False):
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return failure(401, "this endpoint needs Authorization: Bearer <token> (the token "
                           "is printed in the switch's banner)",
                           headers={"WWW-Authenticate": 'Bearer realm="switch"'})
        if not hmac.compare_digest(given[7:].strip().encode(), request.app[TOKEN_KEY].encode()):
            return failure(403, "wrong token")
    try:
        return await handler(request)
    except (UserError, ValueError, msgspec.ValidationError, msgspec.DecodeError) as error:
        return failure(400, str(error))


def failure(status: int, message: str, headers: dict | None = None, **fields) -> web.Response:
    """An error answer: {"error": message, **fields}."""
    return web.json_response({"error": message, **fields}, status=status, headers=headers)


async def dashboard(request: web.Request) -> web.Response:
    page = (resources.files("switch.admin") / "dashboard.html").read_text()
    return web.Response(text=page, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "up"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis answers and has the ledger's function library (a Redis restarted empty
    does not until the first call reloads it)."""
    ledger = request.app[LEDGER_KEY]
    library = library_name(ledger.scripts.library.code)
    try:
        async with asyncio.timeout(limits.admin_probe_timeout_s):
            await ledger.client.ping()
            loaded = await ledger.client.execute_command("FUNCTION", "LIST", "LIBRARYNAME",
                                                         library)
    except Exception as error:  # noqa: BLE001 - any failure is the reason we are not ready
        reason = f"Redis unreachable: {type(error).__name__}: {error}".rstrip(": ")
        return web.json_response({"ready": False, "reason": reason}, status=503)
    if isinstance(loaded, dict):  # a cluster: each master's list (redis-py asks them all)
        loaded = all(loaded.values())
    if not loaded:
        return web.json_response({"ready": False, "reason": f"Redis does not have the "
                                  f"function library {library} loaded"}, status=503)
    return web.json_response({"ready": True, "library": library})


def library_name(code: str) -> str:
    """The name in a library's `#!lua name=...` first line."""
    return code.split("name=", 1)[1].split(None, 1)[0]


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def show_policy(request: web.Request) -> web.Response:
    return web.json_response(request.app[POLICY_KEY].describe())


async def reload_policy(request: web.Request) -> web.Response:
    source = request.app[POLICY_KEY]
    try:
        source.reload()
    except PolicyError as error:
        return web.json_response({"reloaded": False, "error": str(error),
                                  "in_force": source.describe()["name"]}, status=422)
    log.warning("policy reloaded from %s (over HTTP)", source.origin)
    source.announce()
    described = source.describe()
    return web.json_response({"reloaded": True, "source": described["source"],
                              "name": described["name"], "reloads": described["reloads"]})


async def card_view(request: web.Request) -> dict | web.Response:
    pan = resolve_pan(request.match_info["card"])
    view = await request.app[LEDGER_KEY].card(pan)
    if view is None:
        return failure(404, f"no card {mask_pan(pan)}")
    view.pan = mask_pan(view.pan)
    return msgspec.to_builtins(view)


async def show_card(request: web.Request) -> web.Response:
    view = await card_view(request)
    return view if isinstance(view, web.Response) else web.json_response(view)


async def card_transactions(request: web.Request) -> web.Response:
    view = await card_view(request)
    if isinstance(view, web.Response):
        return view
    return web.json_response({"pan": view["pan"], "transactions": view["transactions"]})


async def change_card(request: web.Request) -> web.Response:
    change = msgspec.json.decode(await request.read(), type=CardChange)
    pan = resolve_pan(request.match_info["card"])
    await request.app[LEDGER_KEY].set_card(pan, limit_fen=change.limit_fen,
                                           status=change.status, expiry=change.expiry,
                                           statement_day=change.statement_day)
    return await show_card(request)


async def upgrade_account(request: web.Request) -> web.Response:
    wanted = msgspec.json.decode(await request.read(), type=Upgrade)
    ledger = request.app[LEDGER_KEY]
    pan, created = await ledger.upgrade(request.match_info["account"], wanted.limit_fen,
                                        wanted.status)
    view = await ledger.card(pan)
    view.pan = mask_pan(pan)
    return web.json_response({"created": created, "card": msgspec.to_builtins(view)})


async def repay_card(request: web.Request) -> web.Response:
    """A repayment (Ledger.repay): the outcome, its ref and amount, and the card after it."""
    wanted = msgspec.json.decode(await request.read(), type=Repay)
    pan = resolve_pan(request.match_info["card"])
    ledger = request.app[LEDGER_KEY]
    try:
        done = await ledger.repay(pan, wanted.amount_fen, wanted.ref)
    except RepaymentUnconfirmed as error:  # the ref to send again is in the answer
        return failure(503, f"{error.retry_advice()} (card {mask_pan(pan)})", ref=error.ref)
    if done.outcome == "no_card":
        return failure(404, f"no card {mask_pan(pan)}")
    if done.outcome == "mismatch":
        return failure(409, f"repayment {done.ref} was {done.amount} fen, not "
                       f"{wanted.amount_fen}: nothing changed")
    view = await ledger.card(pan)
    view.pan = mask_pan(pan)
    # A repeat is no error: the repayment stands as first made, and the card is as it is.
    return web.json_response({"outcome": done.outcome, "ref": done.ref, "amount_fen":
                              done.amount, "card": msgspec.to_builtins(view)})


class AdminServer:
    """The admin app on one address, started and stopped with the switch."""

    def __init__(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0)
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        try:
            await site.start()
        except OSError as error:
            await self.runner.cleanup()
            raise AdminListenError(f"the admin API cannot listen on {host}:{port}: "
                                   f"{error.strerror or error}; choose another with --admin "
                                   "HOST:PORT, or --admin off") from None
        self.port = self.runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()


class AdminListenError(OSError):
    """The admin address cannot be bound: one line to the user."""

