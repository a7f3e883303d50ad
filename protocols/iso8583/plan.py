"""Plans: one straight-line Python function per message shape seen repeatedly.

A switch sees few shapes (the 0100 from one terminal type always carries the same fields).
For a shape (the wire bitmap when decoding, the key set and MTI when encoding) it writes
the source of one function with every size, prefix table and check inlined, and compiles it
once, the way dataclasses and attrs build their methods. Runs of adjacent fixed ASCII
fields are matched by one regex. No loop, no per-field call, no spec lookup remains.

A plan is optimistic: on anything unusual (a bad character, a wrong type, truncation) it
returns None and the codec's generic path, built from the per-field closures in fields.py,
redoes the message and raises the precise Iso8583Error. So error reporting lives in one
place, and a plan only has to be right about the values it accepts: its checks admit
exactly what the per-field checks admit (test_iso8583_codec.py compares both paths). The
exceptions, bcd fields and a bcd MTI, call their own closures, which raise the very error
the generic path would.

The generated source contains only names bound here, integers from the dialect, field
numbers (validated digits) and pad characters (as repr): nothing from a message ever
reaches compile().
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import itemgetter

from .dialect import FieldSpec
from .fields import prefix_tables

plan_hot_after_count = 2  # compile on the 2nd sighting: one-off shapes (garbage) never pay
plans_per_cache_max = 256  # bounds compiles (about a millisecond each) and memory
sightings_max = 4096  # the sighting counter is cleared when it grows past this

# Character classes equal to fields._BYTE_CHECKS, applied to text decoded as latin-1.
_CLASSES = {
    "n": "[0-9]",
    "an": "[0-9A-Za-z ]",
    "ans": "[\\x20-\\x7e]",
    "z": "[0-9=D]",
    "h": "[0-9A-Fa-f]",
}

# One field of a shape: its spec, encoder and decoder (see fields.build).
Entry = tuple[FieldSpec, Callable, Callable]


class PlanCache:
    """Plans by shape key, compiled on a shape's repeated sighting, at most a bounded few."""

    __slots__ = ("plans", "by_index", "_seen", "_compile", "_limit")

    def __init__(self, compile_plan: Callable, limit: int = plans_per_cache_max) -> None:
        self.plans: dict = {}
        # Plans by a cheap index key. An encode plan checks its own keys, so the encoder
        # finds candidates by (len(fields), MTI) without hashing every key per message.
        self.by_index: dict = {}
        self._seen: dict = {}
        self._compile = compile_plan
        self._limit = limit  # 0: never compile (the generic path only)

    def note(self, shape: object, entries: Callable[[], Sequence[Entry]], index=None) -> None:
        """Record that a message of this shape passed the generic path; maybe compile."""
        if len(self.plans) >= self._limit:
            return
        seen = self._seen.get(shape, 0) + 1
        if seen < plan_hot_after_count:
            if len(self._seen) >= sightings_max:
                self._seen.clear()
            self._seen[shape] = seen
            return
        self._seen.pop(shape, None)
        plan = self.plans[shape] = self._compile(entries())
        self.by_index[index] = (*self.by_index.get(index, ()), plan)


def _text_fixed(spec: FieldSpec) -> bool:
    return spec.kind == "fixed" and spec.encoding == "ascii"


def _runs(entries: Sequence[Entry]) -> list[list[FieldSpec]]:
    """Group specs: adjacent fixed ASCII fields together, each other field alone."""
    groups: list[list[FieldSpec]] = []
    for spec, _, _ in entries:
        if groups and _text_fixed(spec) and _text_fixed(groups[-1][-1]):
            groups[-1].append(spec)
        else:
            groups.append([spec])
    return groups


def _pattern(specs: Sequence[FieldSpec], group: bool, sep: str = "") -> str:
    parts = []
    for spec in specs:
        if spec.content == "xn":
            body = f"[CD][0-9]{{{spec.max_len - 1}}}"
        else:
            body = f"{_CLASSES[spec.content]}{{{spec.max_len}}}"
        parts.append(f"({body})" if group else body)
    return sep.join(parts)


def _check(spec: FieldSpec, var: str, env: dict) -> str:
    """A source expression, true when the text in `var` is valid content for spec."""
    if spec.content == "n":
        return f"({var}.isdigit() and {var}.isascii())"
    body = "[CD][0-9]*" if spec.content == "xn" else f"{_CLASSES[spec.content]}*"
    env[f"K{spec.number}"] = re.compile(body).fullmatch  # the length is checked apart
    return f"K{spec.number}({var})"


def _compile(source: str, env: dict, name: str) -> Callable:
    code = compile(source, f"<iso8583 plan {name}>", "exec")
    exec(code, env)  # the source holds only names, numbers and repr'd pads (see top)
    return env[name]


# ---- decode -----------------------------------------------------------------------------


def compile_decode_plan(
    entries: Sequence[Entry], mti_decode: Callable, mti_ascii: bool
) -> Callable:
    """decode(data, text, pos) -> dict | None, for messages of this bitmap; pos: after it."""
    env: dict = {"MTI": mti_decode}
    lines = ["def decode(data, text, pos):"]
    if mti_ascii:
        lines += ["    mti = text[:4]", "    if not (mti.isdigit() and mti.isascii()): return None"]
    else:
        lines.append("    mti, _ = MTI(data)")
    for index, run in enumerate(_runs(entries)):
        spec = run[0]
        if len(run) > 1:
            lines += _decode_run(run, index, env)
        elif spec.encoding == "bcd":  # rare: the field's own closure (it raises on error)
            env[f"D{spec.number}"] = next(e[2] for e in entries if e[0] is spec)
            lines.append(f"    v{spec.number}, pos = D{spec.number}(data, pos)")
        elif spec.kind == "fixed":
            lines += _decode_fixed(spec, env)
        else:
            lines += _decode_var(spec, env)
    lines.append("    if pos != len(data): return None")
    items = ", ".join(f"'{spec.number}': v{spec.number}" for spec, _, _ in entries)
    lines.append(f"    return {{'t': mti, {items}}}")
    return _compile("\n".join(lines), env, "decode")


def _decode_run(run: Sequence[FieldSpec], index: int, env: dict) -> list[str]:
    env[f"R{index}"] = re.compile(_pattern(run, group=True)).match
    names = ", ".join(f"v{spec.number}" for spec in run)
    return [
        f"    m = R{index}(text, pos)",
        "    if m is None: return None",
        f"    {names} = m.groups()",
        f"    pos += {sum(spec.max_len for spec in run)}",
    ]


def _decode_fixed(spec: FieldSpec, env: dict) -> list[str]:
    var, size = f"v{spec.number}", spec.max_len
    source = "data" if spec.encoding == "binary" else "text"
    lines = [f"    end = pos + {size}", f"    {var} = {source}[pos:end]"]
    if spec.encoding == "binary":
        lines.append(f"    if len({var}) != {size}: return None")
    else:
        lines.append(f"    if len({var}) != {size} or not {_check(spec, var, env)}: return None")
    return lines + ["    pos = end"]


def _decode_var(spec: FieldSpec, env: dict) -> list[str]:
    var, num = f"v{spec.number}", spec.number
    width, _, lengths = prefix_tables(spec)
    env[f"L{num}"] = {prefix.decode("latin-1"): size for prefix, size in lengths.items()}
    source = "data" if spec.encoding == "binary" else "text"
    # A bad prefix gives n = -1: the slice is then empty, its length never -1, so the
    # length check below refuses it without a separate test.
    lines = [
        f"    end = pos + {width}",
        f"    n = L{num}.get(text[pos:end], -1)",
        "    pos = end + n",
        f"    {var} = {source}[end:pos]",
    ]
    if spec.encoding == "binary":
        lines.append(f"    if len({var}) != n: return None")
    else:  # an empty variable field is valid whatever its content type
        lines.append(f"    if len({var}) != n or (n and not {_check(spec, var, env)}): return None")
    return lines


# ---- encode -----------------------------------------------------------------------------


def compile_encode_plan(
    entries: Sequence[Entry], mti_encode: Callable, mti_ascii: bool, bitmap: bytes
) -> Callable:
    """encode(fields) -> bytes | None, for messages with exactly these keys (in any order).

    A mapping of as many keys that lacks one of these raises KeyError in G: not this plan.
    """
    env: dict = {"MTI": mti_encode, "BITMAP": bitmap.decode("latin-1")}
    names = ["t"] + [f"v{spec.number}" for spec, _, _ in entries]
    keys = ["t"] + [spec.key for spec, _, _ in entries]
    env["G"] = itemgetter(*keys)
    take = f"    {', '.join(names)} = G(f)" if len(keys) > 1 else "    t = G(f)"
    lines = ["def encode(f):", "  try:", take]
    # The MTI first, as on the generic path, so both meet the same error first.
    if mti_ascii:
        lines.append("    if not (len(t) == 4 and t.isdigit() and t.isascii()): return None")
        pieces = ["t", "BITMAP"]
    else:
        pieces = ["MTI(t).decode('latin-1')", "BITMAP"]
    for index, run in enumerate(_runs(entries)):
        spec = run[0]
        if len(run) > 1 or (spec.kind == "fixed" and spec.encoding == "ascii"):
            lines += _encode_run(run, index, env)
            pieces.append(f"r{index}")
        elif spec.encoding == "bcd":  # the field's own encoder (it raises on error)
            env[f"E{spec.number}"] = next(e[1] for e in entries if e[0] is spec)
            pieces.append(f"E{spec.number}(v{spec.number}).decode('latin-1')")
        else:
            lines += _encode_other(spec, env)
            pieces.append(f"p{spec.number}")
    lines.append(f"    return ''.join(({', '.join(pieces)},)).encode('latin-1')")
    # A value of the wrong type fails an operation above; the generic path names it.
    lines.append("  except (KeyError, TypeError, AttributeError, UnicodeError): return None")
    return _compile("\n".join(lines), env, "encode")


def _encode_run(run: Sequence[FieldSpec], index: int, env: dict) -> list[str]:
    """Values at full width pass one fullmatch on the values joined by newlines (a character
    no content type admits, so it marks every boundary); others are padded as the field
    encoder would, then checked joined."""
    pad_lines = []
    for spec in run:
        var, size = f"v{spec.number}", spec.max_len
        pad = spec.pad_left or spec.pad_right
        justify = "rjust" if spec.pad_left else "ljust"
        if pad:
            pad_lines.append(f"if len({var}) < {size}: {var} = {var}.{justify}({size}, {pad!r})")
        else:
            pad_lines.append(f"if len({var}) != {size}: return None")
    if len(run) == 1:  # no regex with a fixed width here: check the length itself
        var, size = f"v{run[0].number}", run[0].max_len
        check = _check(run[0], var, env)
        return [
            f"    {pad_lines[0]}",
            f"    r{index} = {var}",
            f"    if len({var}) != {size} or not {check}: return None",
        ]
    env[f"S{index}"] = re.compile(_pattern(run, group=False, sep="\\n")).fullmatch
    env[f"R{index}"] = re.compile(_pattern(run, group=False)).fullmatch
    names = ", ".join(f"v{spec.number}" for spec in run)
    joined = " + ".join(f"v{spec.number}" for spec in run)
    # Padded values are at least max_len long and unpadded ones exactly max_len, so the
    # joined length is right only if every value is: no overflow hides a shortfall.
    return [
        f"    r{index} = '\\n'.join(({names},))",
        f"    if S{index}(r{index}): r{index} = r{index}.replace('\\n', '')",
        "    else:",
        *(f"      {line}" for line in pad_lines),
        f"      r{index} = {joined}",
        f"      if not R{index}(r{index}): return None",
    ]


def _encode_other(spec: FieldSpec, env: dict) -> list[str]:
    """A variable ASCII field, or a binary field (bytes carried as latin-1 text)."""
    var, num, binary = f"v{spec.number}", spec.number, spec.encoding == "binary"
    wrong_type = f"type({var}) is not {'bytes' if binary else 'str'}"
    text = f"{var}.decode('latin-1')" if binary else var
    if spec.kind == "fixed":
        return [
            f"    if {wrong_type} or len({var}) != {spec.max_len}: return None",
            f"    p{num} = {text}",
        ]
    _, prefixes, _ = prefix_tables(spec)
    env[f"P{num}"] = tuple(prefix.decode("latin-1") for prefix in prefixes)
    bad = f"{wrong_type} or len({var}) > {spec.max_len}"
    if not binary:  # an empty variable field is valid whatever its content type
        bad += f" or ({var} and not {_check(spec, var, env)})"
    return [f"    if {bad}: return None", f"    p{num} = P{num}[len({var})] + {text}"]
