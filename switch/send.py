"""`switch send`: speak a channel's wire format to a running switch and show the answer."""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from protocols import iso_client, jd, wechat, xpay
from protocols.cardnumbers import mask_pan
from protocols.channel import ClientAnswer
from protocols.demo import (
    DEMO_JD_KEY,
    DEMO_JD_MERCHANT,
    DEMO_WECHAT_APPID,
    DEMO_WECHAT_KEY,
    DEMO_WECHAT_MCH_ID,
)
from protocols.framing import BINARY_2, HEADER_FORMATS, Framer, HeaderFormat
from protocols.iso8583.dialect import Dialect
from protocols.iso_envelope import CLIENT_MESSAGE_HEADER, ENVELOPES, NO_ENVELOPE, Envelope
from protocols.iso_pin import PinError, encrypt_pin
from protocols.iso_presets import preset
from protocols.iso_session import SessionAction, network_request
from protocols.messages import AuthRequest, MessageClass
from switch.cli_common import UserError

CLASS_OF_TYPE = {
    "auth": MessageClass.AUTH,
    "sale": MessageClass.SALE,
    "capture": MessageClass.CAPTURE,
    "reverse": MessageClass.REVERSAL,
    "refund": MessageClass.REFUND,
    "inquiry": MessageClass.INQUIRY,
    "refundquery": MessageClass.INQUIRY,  # WeChat Pay's: the refunds of an order
}
# Types only some channels have: type -> the channels that have it.
CHANNEL_TYPES = {"refundquery": ("wechat",)}
ANSWER_WAIT_S = 10.0  # a switch answers within its deadline; this only bounds a dead peer
ANSWER_SIZE_MAX_BYTES = 1 << 20


class Sender(NamedTuple):
    header: HeaderFormat
    encode: Callable[[AuthRequest, Any], bytes]  # (request, CLI args) -> body
    # (body, CLI args) -> answer; its signature or MAC checked unless args.unchecked
    decode: Callable[[bytes, Any], ClientAnswer]
    carries_beans: bool = False  # the channel's answer says how many beans it earned


# channel -> (demo merchant id, its key): what --merchant and --key default to.
DEMO_MERCHANTS = {"jd": (DEMO_JD_MERCHANT, DEMO_JD_KEY),
                  "wechat": (DEMO_WECHAT_MCH_ID, DEMO_WECHAT_KEY)}


def merchant_key(args: Any) -> bytes:
    return (args.key or DEMO_MERCHANTS.get(args.channel, ("", ""))[1]).encode()


def _jd_encode(request: AuthRequest, args: Any) -> bytes:
    return jd.encode_request(request, merchant_key(args), userId=args.user or "")


def answer_key(args: Any) -> bytes | None:
    """The key an answer's signature is checked with; None: not checked."""
    return None if getattr(args, "unchecked", False) else merchant_key(args)


def _jd_decode(body: bytes, args: Any) -> ClientAnswer:
    return jd.decode_response(body, answer_key(args))


def _wechat_encode(request: AuthRequest, args: Any) -> bytes:
    extra = {"sign_type": _wechat_sign_type(args)}
    if args.type == "refundquery":
        extra |= {"api": "refundquery", "out_refund_no": getattr(args, "refund", None) or ""}
    return wechat.encode_request(request, merchant_key(args), args.appid or DEMO_WECHAT_APPID,
                                 **extra)


def _wechat_decode(body: bytes, args: Any) -> ClientAnswer:
    return wechat.decode_response(body, answer_key(args), _wechat_sign_type(args))


def _wechat_sign_type(args: Any) -> str:
    """--sign-type (the answer is checked the same way); HMAC-SHA256 unless it says."""
    return getattr(args, "sign_type", None) or wechat.SIGN_TYPE


def choose_wire(args: Any) -> HeaderFormat | None:
    """--dialect read as a preset: args.dialect and args.envelope become the preset's; the
    length header is --header, else the preset's, else None (the channel's default)."""
    chosen = preset(args.dialect)
    args.dialect = chosen.dialect
    args.envelope = ENVELOPES[chosen.envelope or "none"]
    name = args.header or chosen.header
    return HEADER_FORMATS[name] if name else None


def client_front(envelope: Envelope, tpdu_hex: str | None) -> bytes | None:
    """What goes before the MTI: --tpdu (10 hex digits, `60` first) and the default message
    header, when the envelope has them; None: the envelope's defaults."""
    if not tpdu_hex or not envelope.tpdu:
        return None
    try:
        tpdu = bytes.fromhex(tpdu_hex)
    except ValueError:
        tpdu = b""
    if len(tpdu) != 5 or tpdu[0] != 0x60:
        raise ValueError(f"--tpdu {tpdu_hex!r}: 10 hex digits starting 60 (the TPDU id), "
                         "then destination and source, e.g. 6000030000")
    return tpdu + (CLIENT_MESSAGE_HEADER if envelope.message_header else b"")


def _iso(args: Any) -> iso_client.IsoClient:
    """As the terminal: `signing_key` is its MAC key (switch/terminal_cli.py key_for_send);
    answers unchecked when args.unchecked."""
    envelope = getattr(args, "envelope", NO_ENVELOPE)
    front = client_front(envelope, getattr(args, "tpdu", None))
    key = None if getattr(args, "unchecked", False) else args.signing_key
    return iso_client.IsoClient(args.dialect, key, envelope, front)


def _iso_ids(args: Any) -> tuple[str, str]:
    """(STAN, F7) from --id (MTI-STAN-F7 or STAN-F7, to repeat a message), else new ones."""
    if args.id:
        parts = args.id.split("-")
        return iso_client.parse_correlation_id("-".join(["0000", *parts[-2:]]))[1:]
    return f"{secrets.randbelow(1_000_000):06d}", time.strftime("%m%d%H%M%S", time.gmtime())


def _iso_fields(request: AuthRequest, args: Any, entry_mode: str) -> dict[str, Any]:
    stan, transmitted = _iso_ids(args)
    return iso_client.request_message(
        request, stan=stan, transmitted=transmitted, terminal=args.terminal,
        acquirer=args.acquirer, original=args.original or "", entry_mode=entry_mode,
        remaining_fen=args.remaining)


def _pos_encode(request: AuthRequest, args: Any) -> bytes:
    """With --pin: F52 under the terminal's session PIN key, F22 ending in 1 (PIN entered)."""
    pin = getattr(args, "pin", None)
    client = _iso(args)
    fields = _iso_fields(request, args, args.entry_mode or ("051" if pin else "052"))
    if pin:
        fields["52"] = pin_field(args.signing_key, pin, request.card, client.codec.dialect)
    return client.encode(fields)


def pin_field(key: Any, pin: str, pan: str, dialect: Dialect) -> str | bytes:
    """F52: the PIN's format 0 block under the session's PIN key, with the session's cipher
    (protocols/iso_pin.py): 8 bytes under 3DES, 16 under SM4, which the dialect's F52 must
    hold."""
    pin_key = getattr(key, "pin_key", None)
    if pin_key is None:
        raise UserError("--pin needs the terminal's session PIN key: sign it on first "
                        "(`switch terminal sign-on ACQUIRER TERMINAL`)")
    try:
        block = encrypt_pin(pin_key, pin, pan, key.algorithm)
    except PinError as error:
        raise UserError(f"--pin: {error}") from None
    spec = dialect.field(52)
    binary = spec is not None and spec.encoding == "binary"
    held = 0 if spec is None else spec.max_len if binary else spec.max_len // 2
    if held != len(block):
        raise UserError(f"--pin: a {key.algorithm} PIN block is {len(block)} bytes; F52 of "
                        f"dialect {dialect.name} holds {held} (docs/channels/pos.md, \"PIN\")")
    return block if binary else block.hex().upper()


def _xpay_encode(request: AuthRequest, args: Any) -> bytes:
    """A wallet message; purchases, pre-authorizations and inquiries carry the cryptogram
    made with the token's key (args.token_key, hex) and ATC (args.atc)."""
    client = _iso(args)
    fields = _iso_fields(request, args, args.entry_mode or "072")
    if request.message_class in xpay.DEVICE_CLASSES:
        fields["55"] = xpay.icc_field(request.amount_fen, request.currency, args.atc,
                                      os.urandom(4), bytes.fromhex(args.token_key),
                                      client.binary_mac)
    return client.encode(fields)


def _iso_decode(body: bytes, args: Any) -> ClientAnswer:
    return _iso(args).answer(body)


SENDERS: dict[str, Sender] = {
    "jd": Sender(jd.JdCodec.header, _jd_encode, _jd_decode, carries_beans=True),
    "wechat": Sender(wechat.WechatCodec.header, _wechat_encode, _wechat_decode,
                     carries_beans=True),
    "pos": Sender(BINARY_2, _pos_encode, _iso_decode),
    "xpay": Sender(BINARY_2, _xpay_encode, _iso_decode),
}


def new_transaction_id() -> str:
    return time.strftime("T%Y%m%d%H%M%S") + secrets.token_hex(3).upper()


def build_request(args: Any, pan: str) -> AuthRequest:
    """ValueError for a --type the channel does not have."""
    if args.channel not in CHANNEL_TYPES.get(args.type, (args.channel,)):
        raise ValueError(f"--type {args.type} is only on "
                         f"{', '.join(CHANNEL_TYPES[args.type])}, not on {args.channel}")
    return AuthRequest(
        message_class=CLASS_OF_TYPE[args.type],
        channel=args.channel,
        card=pan,
        amount_fen=args.amount,
        mcc=args.mcc,
        expiry=args.expiry or "",
        merchant_id=args.merchant or DEMO_MERCHANTS.get(args.channel, ("", ""))[0],
        txn_ref=args.id or new_transaction_id(),
        original_ref=args.original or "",
        transmitted_at=time.strftime("%Y%m%d%H%M%S"),
        partial_ok=args.partial,
        instant_refund=args.lightning,
    )


async def exchange(host: str, port: int, header: HeaderFormat, body: bytes) -> bytes:
    """One request, one answer, every wait bounded."""
    framer = Framer(header, ANSWER_SIZE_MAX_BYTES)
    async with asyncio.timeout(ANSWER_WAIT_S):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(framer.frame(body))
            await writer.drain()
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the switch closed the connection without answering")
                frames = framer.feed(data)
                if frames:
                    return frames[0]
        finally:
            writer.close()


async def sign_on_exchange(host: str, port: int, acquirer: str, terminal: str,
                           action: str = SessionAction.SIGN_ON, dialect: str = "iso87ascii"
                           ) -> dict[str, Any]:
    """A terminal's 0800 to a pos listener (unsigned, as terminals sign on before they have
    working keys) and the 0810's fields. The switch keeps the session's keys in Redis.
    `dialect`: the listener's, or a preset (its length header and envelope too)."""
    wire = preset(dialect)
    client = iso_client.IsoClient(wire.dialect, envelope=ENVELOPES[wire.envelope or "none"])
    header = HEADER_FORMATS[wire.header] if wire.header else BINARY_2
    fields = network_request(action, stan=f"{secrets.randbelow(1_000_000):06d}",
                             transmitted=time.strftime("%m%d%H%M%S", time.gmtime()),
                             acquirer=acquirer, terminal=terminal)
    return client.decode(await exchange(host, port, header, client.encode(fields)))


# The options that say where and how a request went: an undo must go the same way.
WIRE_OPTIONS = ("host", "port", "merchant", "appid", "sign_type", "user", "acquirer",
                "terminal", "dialect", "header", "tpdu", "mac_algorithm", "mac")
SECRET_OPTIONS = ("key", "mac_key", "token_key")  # named, never printed


def wire_options(args: Any, defaults: dict[str, Any]) -> str:
    """The wire options of `args` that differ from `defaults` (the parser's), as options to
    type again; a secret given is named, not shown."""
    given = [f"--{name.replace('_', '-')} {shlex.quote(str(getattr(args, name)))}"
             for name in WIRE_OPTIONS
             if getattr(args, name, None) not in (None, defaults.get(name))]
    hidden = [f"--{name.replace('_', '-')}" for name in SECRET_OPTIONS
               if getattr(args, name, None) not in (None, defaults.get(name))]
    if hidden:
        given.append(f"(and your {' '.join(hidden)})")
    return " ".join(given)


def describe(request: AuthRequest, answer: ClientAnswer, card_label: str,
             options: str = "") -> str:
    """`card_label`: how the user named the card (an alias, or the masked number);
    `options`: the wire options the request went with (`wire_options`)."""
    r = answer.response
    verdict = "APPROVED" if r.approved else "DECLINED"
    lines = [
        f"{verdict} {r.response_code}" + (f"  reason {r.reason}" if r.reason else "")
        + ("  (repeat: first answer returned)" if r.repeat else "")
        + ("  (stand-in: decided by the switch alone, Redis unreachable)" if r.stand_in else ""),
        f"  {request.message_class.value} of {amount_text(request)} on "
        f"{mask_pan(request.card)} via {request.channel}, id {answer.correlation_id}",
        f"  approved {r.approved_fen} fen, auth id {r.auth_id or '-'}, "
        f"open-to-buy {r.open_to_buy_fen} fen"
        + (f", beans {r.beans:+d}" if SENDERS[request.channel].carries_beans else ""),
    ]
    if r.approved and request.message_class in (MessageClass.AUTH, MessageClass.SALE):
        option = "--token" if request.channel == "xpay" else "--pan"
        lines.append(f"  undo with: switch send --channel {request.channel} --type reverse "
                     f"{option} {card_label} --original {answer.correlation_id}"
                     + (f" {options}" if options else ""))
    return "\n".join(lines)


def amount_text(request: AuthRequest) -> str:
    if request.message_class is MessageClass.REVERSAL and request.amount_fen == 0:
        return "the whole original"
    return f"{request.amount_fen} fen"


def as_json(answer: ClientAnswer) -> str:
    # The card number never leaves unmasked: JD's cardNo is dropped, ISO 8583 F2 masked.
    fields = {k: mask_pan(v) if k == "2" else v for k, v in answer.fields.items()
              if k not in ("cardNo",)}
    summary = msgspec.structs.asdict(answer.response) | {"id": answer.correlation_id,
                                                         "wire": fields}
    return msgspec.json.encode(summary).decode()
