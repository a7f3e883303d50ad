"""Fields a terminal leaves out that the switch reads from other fields instead, sans-IO.

Which fields, and from where, is data in the dialect (`[fallbacks]`,
protocols/iso8583/dialect.py): UnionPay terminals send no F7 (transmission time) and no F18
(merchant type), so the `unionpay` dialect reads F7 from F13 + F12 and F18 from characters
8-11 of the merchant id in F42; the `iso87` dialects have none and keep requiring both.
Everything that reads a request (the listeners, `switch iso validate`, the conformance kit)
reads it through `with_fallbacks`, so they agree. docs/channels/pos.md, "When F7 or F18 is
absent".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.channel import FieldError
from protocols.codes import Code, Reason
from protocols.iso8583 import Dialect, Fallback
from protocols.iso8583.dialect import CONTENT_CHARS


class FallbackError(FieldError):
    """A field that cannot be read from its sources: answered 30 with `reason`."""

    def __init__(self, fallback: Fallback, source: str, reason: str) -> None:
        super().__init__(Code.FORMAT_ERROR, reason)
        self.field = fallback.field  # the field read instead (7, 18)
        self.source = source  # the source at fault (12, 42)
        self.sources = sources_words(fallback)  # "F13 + F12"


def with_fallbacks(dialect: Dialect, message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message as the switch reads it: every absent field the dialect can rebuild, added.

    The message itself when nothing is added, else a copy (the answer echoes only what
    came). A field stays absent when none of its sources is there either: what needs it
    says so (`field_7_missing`, `mcc_missing`). FallbackError (30) when only some of them
    are there (`field_12_missing`), or they do not make a value of the field's kind
    (`format:field_42`: no four digits where the MCC is).
    """
    filled, errors = fill(dialect, message)
    if errors:
        raise errors[0]
    return filled


def fill(dialect: Dialect, message: Mapping[str, Any]
         ) -> tuple[Mapping[str, Any], list[FallbackError]]:
    """`with_fallbacks` that carries on past a field it cannot rebuild (left absent): the
    message as far as it can be read, and each error (`switch iso validate`, the kit)."""
    filled, errors = message, []
    for fallback in dialect.fallbacks:
        if message.get(fallback.field, "") != "":
            continue
        try:
            value = rebuilt(fallback, message)
        except FallbackError as error:
            errors.append(error)
            continue
        if value:
            if filled is message:
                filled = dict(message)
            filled[fallback.field] = value
    return filled, errors


def rebuilt(fallback: Fallback, message: Mapping[str, Any]) -> str:
    """The field made of its sources; "" when none is there; FallbackError when it cannot
    be made."""
    given = [message.get(part.source, "") for part in fallback.parts]
    if not any(given):
        return ""
    allowed = CONTENT_CHARS[fallback.content] or ""
    out = []
    for part, value in zip(fallback.parts, given, strict=True):
        if value == "":
            raise FallbackError(fallback, part.source,
                                Reason.FIELD_MISSING.format(field=part.source))
        text = value[part.at - 1:part.at - 1 + part.size]
        # strip() leaves nothing of a text made only of allowed characters (C speed).
        if (part.whole and len(value) != part.size) or len(text) != part.size or text.strip(
                allowed):
            raise FallbackError(fallback, part.source,
                                Reason.FORMAT.format(detail=f"field_{part.source}"))
        out.append(text)
    return "".join(out)


def read_instead(dialect: Dialect, message: Mapping[str, Any]) -> dict[str, str]:
    """Which absent fields the switch reads from others in this message, for people:
    {"7": "F13 + F12", "18": "F42 characters 8-11"} (whether or not they make a value)."""
    return {fallback.field: sources_words(fallback) for fallback in dialect.fallbacks
            if message.get(fallback.field, "") == "" and any(
                message.get(part.source, "") != "" for part in fallback.parts)}


def sources_words(fallback: Fallback) -> str:
    return " + ".join(f"F{part.source}" if part.whole else
                      f"F{part.source} characters {part.at}-{part.at + part.size - 1}"
                      for part in fallback.parts)


def left_out(dialect: Dialect, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A client's request as a terminal of the dialect sends it: without each field the
    switch reads the same from others (F7 when F13 + F12 say it, F18 when F42 carries it)."""
    out = dict(fields)
    for fallback in dialect.fallbacks:
        sent = out.get(fallback.field, "")
        without = {key: value for key, value in out.items() if key != fallback.field}
        try:
            same = rebuilt(fallback, without) == sent
        except FallbackError:
            same = False
        if same:
            out = without
    return out
