"""`switch send`: speak a channel's wire format to a running switch and show the answer."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from protocols import jd
from protocols.cardnumbers import mask_pan
from protocols.channel import ClientAnswer
from protocols.framing import Framer, HeaderFormat
from protocols.messages import AuthRequest, MessageClass

CLASS_OF_TYPE = {
    "auth": MessageClass.AUTH,
    "sale": MessageClass.SALE,
    "capture": MessageClass.CAPTURE,
    "reverse": MessageClass.REVERSAL,
    "refund": MessageClass.REFUND,
    "inquiry": MessageClass.INQUIRY,
}
ANSWER_WAIT_S = 10.0  # a switch answers within its deadline; this only bounds a dead peer
ANSWER_SIZE_MAX_BYTES = 1 << 20


class Sender(NamedTuple):
    header: HeaderFormat
    encode: Callable[[AuthRequest, Any], bytes]  # (request, CLI args) -> body
    decode: Callable[[bytes, Any], ClientAnswer]  # (body, CLI args) -> answer


def _jd_encode(request: AuthRequest, args: Any) -> bytes:
    return jd.encode_request(request, args.key.encode(), userId=args.user or "")


def _jd_decode(body: bytes, args: Any) -> ClientAnswer:
    return jd.decode_response(body, args.key.encode())


SENDERS: dict[str, Sender] = {
    "jd": Sender(jd.JdCodec.header, _jd_encode, _jd_decode),
}


def new_transaction_id() -> str:
    return time.strftime("T%Y%m%d%H%M%S") + secrets.token_hex(3).upper()


def build_request(args: Any, pan: str) -> AuthRequest:
    return AuthRequest(
        message_class=CLASS_OF_TYPE[args.type],
        channel=args.channel,
        card=pan,
        amount_fen=args.amount,
        mcc=args.mcc,
        expiry=args.expiry or "",
        merchant_id=args.merchant,
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


def describe(request: AuthRequest, answer: ClientAnswer, card_label: str) -> str:
    """`card_label`: how the user named the card (an alias, or the masked number)."""
    r = answer.response
    verdict = "APPROVED" if r.approved else "DECLINED"
    lines = [
        f"{verdict} {r.response_code}" + (f"  reason {r.reason}" if r.reason else "")
        + ("  (repeat: first answer returned)" if r.repeat else ""),
        f"  {request.message_class.value} of {amount_text(request)} on "
        f"{mask_pan(request.card)} via {request.channel}, id {answer.correlation_id}",
        f"  approved {r.approved_fen} fen, auth id {r.auth_id or '-'}, "
        f"open-to-buy {r.open_to_buy_fen} fen, beans {r.beans:+d}",
    ]
    if r.approved and request.message_class in (MessageClass.AUTH, MessageClass.SALE):
        lines.append(f"  undo with: switch send --channel {request.channel} --type reverse "
                     f"--pan {card_label} --original {answer.correlation_id}")
    return "\n".join(lines)


def amount_text(request: AuthRequest) -> str:
    if request.message_class is MessageClass.REVERSAL and request.amount_fen == 0:
        return "the whole original"
    return f"{request.amount_fen} fen"


def as_json(answer: ClientAnswer) -> str:
    fields = {k: v for k, v in answer.fields.items() if k not in ("cardNo",)}
    summary = msgspec.structs.asdict(answer.response) | {"id": answer.correlation_id,
                                                         "wire": fields}
    return msgspec.json.encode(summary).decode()
