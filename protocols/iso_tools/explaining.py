"""A response code and a decline reason in words: `switch iso explain`, as data.

Everything comes from the vocabulary (protocols/codes.py): the code's meaning, whether it
approves, what an adapter does next (ADAPTER_ACTIONS), and which reasons come with it.
"""

from __future__ import annotations

import re

import msgspec

from protocols.codes import (
    ADAPTER_ACTIONS,
    APPROVING,
    DECLINING,
    MEANINGS,
    REASON_CODES,
    Code,
    reason_of,
)
from protocols.iso8583 import get_codec
from protocols.iso_tools.icc import TAG_NAMES

NAMES_DIALECT = "iso87ascii"  # field names for reasons that name a field (both shipped agree)


class Explanation(msgspec.Struct):
    code: str
    meaning: str
    approves: bool
    action: str  # what the sender does next
    reasons: list[str]  # the reason ids (or families) that come with this code
    policy_reasons: list[str]  # and those that come with whichever code the policy names
    reason: str = ""  # the reason asked about, as given
    reason_id: str = ""  # the declared reason (or family) it is
    reason_detail: str = ""  # the family's parameter in words (a field's, a tag's name)
    reason_note: str = ""  # when the reason never comes with this code


def explain(code: str, reason: str = "") -> Explanation:
    """`code` (F39) and, if given, the reason of an answer (F44, `reason`) in words.

    ValueError, naming what is known, for a code or reason that is not in the vocabulary.
    """
    code = code.upper()
    if code not in set(Code):
        known = " ".join(sorted(Code))
        raise ValueError(f"{code!r} is not a response code of this switch (codes: {known})")
    member = Code(code)
    reasons = [r.value for r, codes in REASON_CODES.items() if member in codes]
    chosen = [r.value for r, codes in REASON_CODES.items() if codes == DECLINING]
    out = Explanation(code, MEANINGS[member], code in APPROVING, ADAPTER_ACTIONS[member],
                      sorted(set(reasons) - set(chosen)),
                      sorted(set(reasons) & set(chosen)))
    if reason:
        declared = reason_of(reason)
        if declared is None:
            raise ValueError(f"{reason!r} is not a reason this switch gives (docs/codes.md)")
        out.reason, out.reason_id = reason, declared.value
        out.reason_detail = parameter(declared.value, reason)
        if member not in REASON_CODES[declared]:
            given = " ".join(sorted(REASON_CODES[declared]))
            out.reason_note = f"{declared.value} comes with {given}, never with {code}"
    return out


def codes_of_reason(reason: str) -> list[str]:
    """The codes a reason may come with (every declining one when the policy file picks
    the code); ValueError for a reason the switch never gives."""
    declared = reason_of(reason)
    if declared is None:
        raise ValueError(f"{reason!r} is not a response code or a reason this switch gives")
    return sorted(REASON_CODES[declared])


def parameter(template: str, reason: str) -> str:
    """The value a family's {part} stands for in `reason`, named when it is a field or tag."""
    match = re.fullmatch(re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
                         .replace("{", "(?P<").replace("}", ">.+)"), reason)
    if match is None or not match.groupdict():  # not a family: nothing to name
        return ""
    name, value = next(iter(match.groupdict().items()))
    if name == "detail" and value.startswith("field_"):
        name, value = "field", value[len("field_"):]
    if name == "field" and value.isdigit():
        spec = get_codec(NAMES_DIALECT).dialect.field(int(value))
        return f"F{value} {spec.desc}" if spec else f"F{value}"
    if name == "tag":
        return f"tag {value} {TAG_NAMES.get(value, '')}".rstrip()
    return f"{name} {value}"
