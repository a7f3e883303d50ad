"""What every channel codec offers the server, and the helpers they share.

A codec is sans-IO. On the server side it turns one frame body into either a `Decoded`
request (plus whatever context it needs to answer) or ready reply bytes (a format or
signature error, a network-management echo), and turns a decision back into reply bytes.
On the client side (CLI, load tests) it does the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from protocols.framing import HeaderFormat
from protocols.messages import AuthRequest, AuthResponse


class Decoded(NamedTuple):
    request: AuthRequest
    context: Any  # opaque to the server; handed back to `encode_response`


class KeyNeeded(NamedTuple):
    """What a codec answers when the sender's keys must be fetched (I/O) before its request
    can be read: the server fetches them and calls `decode_request(body, keys)` again."""

    acquirer: str
    terminal: str


class ChannelCodec(Protocol):
    name: str
    header: HeaderFormat

    def decode_request(self, body: bytes) -> Decoded | bytes | KeyNeeded:
        """A request to decide, or the bytes of an immediate reply (or, on the ISO 8583
        channels, the keys to fetch first)."""
        ...

    def encode_response(self, context: Any, response: AuthResponse) -> bytes: ...


class FieldError(ValueError):
    """A request the switch answers at once with `code` (30 format, 12 not supported, ...).

    Every channel's codec raises it while reading a request; `reason` is a reason id from
    protocols/codes.py that the answer names.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class ClientAnswer(NamedTuple):
    """A channel's answer as a client reads it."""

    correlation_id: str  # the channel's own id that ties the answer to its request
    response: AuthResponse
    fields: dict[str, Any]  # the decoded wire message, for display


def sign_sorted_pairs(fields: Mapping[str, Any], key: bytes, suffix: str = "") -> str:
    """HMAC-SHA256 over the non-empty fields except `sign`, sorted by name, as k=v&k=v.

    Both the JD and the WeChat Pay v2 signatures are this rule (WeChat appends `&key=...`).
    """
    text = "&".join(
        f"{name}={fields[name]}" for name in sorted(fields) if name != "sign" and fields[name] != ""
    )
    return hmac.new(key, (text + suffix).encode(), hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.lower(), given.lower())


def check_answer_signature(
    fields: Mapping[str, Any], key: bytes | None, sign: Callable[[Mapping[str, Any], bytes], str]
) -> None:
    """A client's check of an answer's `sign` (`sign` is the channel's rule); no key, no check.

    With the merchant's key every answer must be signed: the switch signs each answer to a
    merchant it knows, so an unsigned one is either not for this merchant or had its
    signature stripped to hide a change. ValueError when it is missing or does not match.
    """
    if key is None:
        return
    given = fields.get("sign", "")
    if not given:
        raise ValueError("answer is not signed, and with a key every answer must be")
    if not signature_matches(sign(fields, key), given):
        raise ValueError("answer signature does not match")


class AnswerFields(NamedTuple):
    """Where a signed-fields channel (JD, WeChat) carries the decision in its answer."""

    code: str  # the field with the response code
    approved_fen: str
    auth_id: str
    open_to_buy_fen: str
    correlation_id: str
    state: str | None = None  # None: the channel's answers carry no transaction state
    stand_in: str = ""  # the field that is "1" on a stand-in answer


def read_signed_answer(fields: dict[str, Any], key: bytes | None,
                       sign: Callable[[Mapping[str, Any], bytes], str],
                       names: AnswerFields) -> ClientAnswer:
    """A client's reading of a JD or WeChat answer: its signature checked (with `key`),
    its decision taken from the fields `names` says."""
    check_answer_signature(fields, key, sign)
    response = AuthResponse(
        response_code=fields.get(names.code, ""),
        approved_fen=int(fields.get(names.approved_fen) or 0),
        auth_id=fields.get(names.auth_id, ""),
        open_to_buy_fen=int(fields.get(names.open_to_buy_fen) or 0),
        reason=fields.get("reason", ""),
        beans=int(fields.get("beans") or 0),
        repeat=fields.get("repeat") == "1",
        state=fields.get(names.state, "") if names.state else "",
        stand_in=fields.get(names.stand_in) == "1",
    )
    return ClientAnswer(fields.get(names.correlation_id, ""), response, fields)
