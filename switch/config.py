"""Switch configuration: a TOML file decoded into msgspec Structs and checked at start-up.

Every setting has a default, so the switch runs with no file at all (`make run`). An unknown
key or a bad value is one error that names it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args, get_type_hints

import msgspec

from protocols.demo import (
    DEMO_ACQUIRER,
    DEMO_JD_KEY,
    DEMO_JD_MERCHANT,
    DEMO_POS_MAC,
    DEMO_POS_TERMINAL,
    DEMO_WECHAT_KEY,
    DEMO_WECHAT_MCC,
    DEMO_WECHAT_MCH_ID,
    DEMO_XPAY_MAC,
    DEMO_XPAY_TERMINAL,
)
from protocols.iso8583 import shipped_dialects
from protocols.iso_mac import MacKey
from protocols.iso_presets import PRESETS, preset
from switch import limits

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

# Listeners started when the config names none; each channel adds its own.
DEFAULT_PORTS = {"jd": 8601, "wechat": 8602, "pos": 8583, "xpay": 8584}


# More replicas than any master of a sane cluster has: a typo, refused (config, --durable-replicas).
DURABLE_REPLICAS_MAX = 16


class ConfigError(ValueError):
    pass


class Listener(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 0


class ServerLimits(msgspec.Struct, forbid_unknown_fields=True):
    """The bounds a config may set (section [limits]); the defaults are in switch/limits.py."""

    frame_size_max_bytes: Annotated[int, msgspec.Meta(ge=64, le=16 * 1024 * 1024)] = (
        limits.frame_size_max_bytes)
    inflight_per_connection_max: Annotated[int, msgspec.Meta(ge=1, le=65536)] = (
        limits.inflight_per_connection_max)
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = limits.idle_timeout_s
    request_deadline_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = (
        limits.request_deadline_ms)
    ledger_fence_guard_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = (
        limits.ledger_fence_guard_ms)
    durable_replicas: Annotated[int, msgspec.Meta(ge=0, le=DURABLE_REPLICAS_MAX)] = (
        limits.durable_replicas)
    durable_wait_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = limits.durable_wait_ms
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = limits.shutdown_grace_s
    shutdown_linger_s: Annotated[float, msgspec.Meta(ge=0)] = limits.shutdown_linger_s
    frame_deadline_s: Annotated[float, msgspec.Meta(gt=0)] = limits.frame_deadline_s
    write_buffer_high_water_bytes: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024 * 1024)] = (
        limits.write_buffer_high_water_bytes)
    write_buffer_low_water_bytes: Annotated[int, msgspec.Meta(ge=0, le=64 * 1024 * 1024)] = (
        limits.write_buffer_low_water_bytes)
    write_paused_max_s: Annotated[float, msgspec.Meta(gt=0)] = limits.write_paused_max_s
    socket_send_buffer_bytes: Annotated[int, msgspec.Meta(ge=0, le=64 * 1024 * 1024)] = (
        limits.socket_send_buffer_bytes)

    def __post_init__(self) -> None:
        if self.write_buffer_low_water_bytes > self.write_buffer_high_water_bytes:
            raise ValueError(
                f"write_buffer_low_water_bytes ({self.write_buffer_low_water_bytes}) must not "
                f"exceed write_buffer_high_water_bytes ({self.write_buffer_high_water_bytes})")


class Jd(msgspec.Struct, forbid_unknown_fields=True):
    # merchant id -> HMAC-SHA256 key used to sign requests and answers
    merchant_keys: dict[str, str] = msgspec.field(
        default_factory=lambda: {DEMO_JD_MERCHANT: DEMO_JD_KEY})


class WechatMerchant(msgspec.Struct, forbid_unknown_fields=True):
    key: str  # the merchant's API key (signs requests and answers, docs/channels/wechat.md)
    # The category the merchant registered with; a request's `mcc` field overrides it.
    mcc: Annotated[str, msgspec.Meta(pattern=r"^\d{4}$")] = "5999"
    # The sign types its requests may use (WeChat v2: MD5, the default, and HMAC-SHA256); an
    # answer is signed the way its request was.
    sign_types: Annotated[list[Literal["MD5", "HMAC-SHA256"]], msgspec.Meta(min_length=1)] = (
        msgspec.field(default_factory=lambda: ["MD5", "HMAC-SHA256"]))


class Wechat(msgspec.Struct, forbid_unknown_fields=True):
    # mch_id -> merchant
    merchants: dict[str, WechatMerchant] = msgspec.field(default_factory=lambda: {
        DEMO_WECHAT_MCH_ID: WechatMerchant(key=DEMO_WECHAT_KEY, mcc=DEMO_WECHAT_MCC)})


class Terminal(msgspec.Struct, forbid_unknown_fields=True):
    """A terminal's MAC key held in the config ([[pos.terminals]]); a key for the same
    terminal in Redis (`switch terminal add`) takes its place."""

    acquirer: Annotated[str, msgspec.Meta(pattern=r"^\d{1,11}$")]  # F32
    terminal: Annotated[str, msgspec.Meta(min_length=1, max_length=8)]  # F41, or * (any)
    algorithm: str  # hmac-sha256, x9.19, sm4 (protocols/iso_mac.py)
    key: str  # hex

    def __post_init__(self) -> None:
        MacKey.parse(self.algorithm, self.key)  # ValueError: the config names this entry

    def mac_key(self) -> MacKey:
        return MacKey.parse(self.algorithm, self.key)


def demo_terminals() -> list[Terminal]:
    return [Terminal(acquirer=DEMO_ACQUIRER, terminal=terminal, algorithm=mac[0], key=mac[1])
            for terminal, mac in ((DEMO_POS_TERMINAL, DEMO_POS_MAC),
                                  (DEMO_XPAY_TERMINAL, DEMO_XPAY_MAC))]


class Iso8583(msgspec.Struct, forbid_unknown_fields=True):
    """One ISO 8583 listener (pos, xpay): see docs/channels/pos.md."""

    # A shipped dialect (protocols/iso8583/dialects/), the path of a dialect file, or a
    # preset (protocols/iso_presets.py: unionpay-pos, ...), which sets the header and
    # envelope too.
    dialect: str = "iso87ascii"
    # Length header before each message (protocols/framing.py HEADER_FORMATS).
    header: Literal["binary2", "binary4", "ascii4", "ascii2", "binary2self",
                    "ascii4self"] = "binary2"
    # What comes between the length header and the MTI (protocols/iso_envelope.py): nothing,
    # a UnionPay TPDU, or a TPDU and UnionPay's 6-byte message header.
    envelope: Literal["none", "tpdu", "tpdu+header"] = "none"
    # "required": every 01xx/02xx/04xx request carries the F64/F128 MAC of its terminal's
    # key (Redis, else `terminals`); "off": nothing is checked or signed (for testers only).
    mac: Literal["required", "off"] = "required"
    # Terminal keys held in the config; by default the demo terminals (protocols/demo.py).
    terminals: list[Terminal] = msgspec.field(default_factory=demo_terminals)

    def __post_init__(self) -> None:
        self.use_dialect(self.dialect)

    def use_dialect(self, name: str) -> None:
        """A dialect, or a preset's dialect, header and envelope."""
        chosen = preset(name)
        self.dialect = chosen.dialect
        self.header = chosen.header or self.header
        self.envelope = chosen.envelope or self.envelope


class Admin(msgspec.Struct, forbid_unknown_fields=True):
    """The admin HTTP API and dashboard (docs/admin.md)."""

    listen: str = ""  # HOST:PORT; empty: none (`make run` serves it on 127.0.0.1:8680)
    token: str = ""  # the bearer token; empty: one is made at start and shown in the banner


class Cards(msgspec.Struct, forbid_unknown_fields=True):
    """What a new card gets (docs/testing.md "The card's month")."""

    # Its statement day (`switch card set --statement-day` changes one card's): 1..28.
    statement_day: Annotated[int, msgspec.Meta(ge=limits.statement_day_min,
                                               le=limits.statement_day_max)] = (
        limits.statement_day_default)


class Recording(msgspec.Struct, forbid_unknown_fields=True):
    """`switch serve --record DIR` ([record]): docs/testing.md, "Record and replay"."""

    dir: str = ""  # empty: no recording
    max_mb: Annotated[int, msgspec.Meta(ge=1)] = limits.record_total_max_bytes // 2**20
    file_max_mb: Annotated[int, msgspec.Meta(ge=1)] = limits.record_file_max_bytes // 2**20

    def __post_init__(self) -> None:
        if self.file_max_mb > self.max_mb:
            raise ValueError(f"record file_max_mb ({self.file_max_mb}) must not exceed "
                             f"max_mb ({self.max_mb})")


class Config(msgspec.Struct, forbid_unknown_fields=True):
    redis_url: str = ""  # empty: the switch starts a private redis-server
    listeners: dict[str, Listener] = msgspec.field(
        default_factory=lambda: {name: Listener(port=port) for name, port in
                                 DEFAULT_PORTS.items()})
    server_limits: ServerLimits = msgspec.field(default_factory=ServerLimits, name="limits")
    policy: str = ""  # policy file (docs/policy.md); empty: the shipped Baitiao default
    # Store-and-forward journals (docs/reliability.md); empty: the run directory (.run).
    journal_dir: str = ""
    jd: Jd = msgspec.field(default_factory=Jd)
    wechat: Wechat = msgspec.field(default_factory=Wechat)
    pos: Iso8583 = msgspec.field(default_factory=Iso8583)
    xpay: Iso8583 = msgspec.field(default_factory=Iso8583)
    admin: Admin = msgspec.field(default_factory=Admin)
    cards: Cards = msgspec.field(default_factory=Cards)
    test_clock: bool = False  # follow the test clock (`switch serve --test-clock`)
    record: Recording = msgspec.field(default_factory=Recording)


def load(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    try:
        return msgspec.toml.decode(text, type=Config)
    except msgspec.DecodeError as error:
        raise ConfigError(f"config {path}: {error}") from None


def read_toml(path: Path, error: type[ValueError]) -> dict:
    """A TOML file's document; `error` with one line naming the file when it cannot be read
    or is not TOML (scenario files, fault rule files)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise error(f"{path}: cannot read: {problem.strerror or problem}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{path}: not valid TOML: {problem}") from None


def parse_port(value: str) -> tuple[str, int]:
    """CHANNEL=PORT from the command line (a channel's port, its host kept)."""
    channel, sep, port = value.partition("=")
    if not sep or channel not in DEFAULT_PORTS or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--port {value!r}: expected CHANNEL=PORT with CHANNEL one of "
                          f"{', '.join(DEFAULT_PORTS)}, e.g. jd=8701")
    return channel, int(port)


def parse_listen(value: str) -> tuple[str, Listener]:
    """CHANNEL=HOST:PORT (or CHANNEL=PORT) from the command line."""
    channel, sep, address = value.partition("=")
    host, _, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {value!r}: expected CHANNEL=HOST:PORT, e.g. jd=127.0.0.1:8601")
    return channel, Listener(host=host or "127.0.0.1", port=int(port))


def parse_admin(value: str) -> tuple[str, int]:
    """HOST:PORT of the admin API (from --admin or [admin] listen)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"admin address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8680, "
                          "or off")
    return host, int(port)


ISO_LISTENERS = ("pos", "xpay")  # the channels with an [Iso8583] section


def parse_dialect(value: str) -> tuple[str, str]:
    """CHANNEL=DIALECT (or CHANNEL=PRESET) from the command line."""
    channel, sep, name = value.partition("=")
    if not sep or channel not in ISO_LISTENERS or not name:
        raise ConfigError(f"--dialect {value!r}: expected CHANNEL=DIALECT with CHANNEL one of "
                          f"{', '.join(ISO_LISTENERS)} and DIALECT a dialect ("
                          f"{', '.join(shipped_dialects())}, or a file) or a preset ("
                          f"{', '.join(PRESETS)}), e.g. pos=unionpay-pos")
    return channel, name


def parse_header(value: str) -> tuple[str, str]:
    """CHANNEL=HEADER from the command line: an ISO 8583 listener's length header preset."""
    channel, sep, name = value.partition("=")
    names = get_args(get_type_hints(Iso8583)["header"])
    if not sep or channel not in ISO_LISTENERS or name not in names:
        raise ConfigError(f"--header {value!r}: expected CHANNEL=HEADER with CHANNEL one of "
                          f"{', '.join(ISO_LISTENERS)} and HEADER one of {', '.join(names)}, "
                          "e.g. pos=ascii2")
    return channel, name
