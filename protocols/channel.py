"""What every channel codec offers the server, and the helpers they share.

A codec is sans-IO. On the server side it turns one frame body into either a `Decoded`
request (plus whatever context it needs to answer) or ready reply bytes (a format or
signature error, a network-management echo), and turns a decision back into reply bytes.
On the client side (CLI, load tests) it does the reverse.
"""

from __future__ import annotations

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
    # hmac.digest: OpenSSL's one-shot HMAC, without building an HMAC object in Python (the
    # load generator signs every JD and WeChat request, the switch checks and signs again).
    return hmac.digest(key, signing_text(fields, suffix).encode(), "sha256").hex()


def signing_text(fields: Mapping[str, Any], suffix: str = "") -> str:
    """The non-empty fields except `sign`, sorted by name, as k=v&k=v, then `suffix`."""
    return "&".join([f"{name}={value}" for name, value in sorted(fields.items())
                     if name != "sign" and value != ""]) + suffix


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.lower(), given.lower())


def check_answer_signature(
    fields: Mapping[str, Any], key: bytes, sign: Callable[[Mapping[str, Any], bytes], str]
) -> None:
    """A client's check of an answer's `sign` with the merchant's `key` (`sign` is the
    channel's rule).

    With the merchant's key every answer must be signed: the switch signs each answer to a
    merchant it knows, so an unsigned one is either not for this merchant or had its
    signature stripped to hide a change. ValueError when it is missing or does not match.
    """
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


def signed_answer_reader(parse: Callable[[bytes], dict[str, Any]],
                         sign: Callable[[Mapping[str, Any], bytes], str],
                         names: AnswerFields) -> Callable[..., ClientAnswer]:
    """The client's reader of a JD or WeChat answer, built once per channel: `parse` turns
    the body into fields, `sign` is the channel's signature rule, `names` says where the
    decision is. The reader takes the body and the merchant's key (None: no check).

    The load generator reads every answer through it, so the field names are bound once
    here instead of looked up in `names` per answer.
    """
    code, approved_fen, auth_id, open_to_buy_fen, correlation_id, state, stand_in = names

    def read(body: bytes, key: bytes | None = None) -> ClientAnswer:
        fields = parse(body)
        if key is not None:
            check_answer_signature(fields, key, sign)
        get = fields.get
        response = AuthResponse(
            response_code=get(code, ""),
            approved_fen=int(get(approved_fen) or 0),
            auth_id=get(auth_id, ""),
            open_to_buy_fen=int(get(open_to_buy_fen) or 0),
            reason=get("reason", ""),
            beans=int(get("beans") or 0),
            repeat=get("repeat") == "1",
            state=get(state, "") if state else "",
            stand_in=get(stand_in) == "1",
        )
        return ClientAnswer(get(correlation_id, ""), response, fields)

    return read
