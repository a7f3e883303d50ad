"""Dialects as data: a TOML file per dialect, read and checked into frozen specs.

A dialect says, per field number, how the field sits on the wire (fixed or with an LL/LLL
length prefix), how its bytes are encoded (ascii, binary, bcd) and what characters it may
hold. Nothing here encodes or decodes; `codec.py` compiles a `Dialect` into fast paths once.
A file may name a `base` dialect and change some of its fields (`unionpay-sm4`: `unionpay`
with a 16-byte F52). See docs/iso8583-codec.md for the file format.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KINDS = ("fixed", "llvar", "lllvar")
ENCODINGS = ("ascii", "binary", "bcd")
LEN_ENCODINGS = ("ascii", "bcd", "binary")
MTI_ENCODINGS = ("ascii", "bcd")
BITMAP_ENCODINGS = ("hex", "binary")

# Content types and the characters each admits (None: raw bytes, no character rule).
# "an" admits the space because fixed an fields are right-padded with spaces on the wire.
CONTENT_CHARS: dict[str, str | None] = {
    "n": "0123456789",
    "an": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
    "z": "0123456789=D",  # track 2: digits, '=' (or 'D') separator
    "xn": "CD0123456789",  # 'C'/'D' sign then digits (fees, net settlement)
    "h": "0123456789ABCDEFabcdef",  # binary data carried as hex text (ASCII dialects)
    "b": None,
}
# Which content types each data encoding can carry.
CONTENT_BY_ENCODING = {
    "ascii": ("n", "an", "ans", "z", "xn", "h"),
    "binary": ("b",),
    "bcd": ("n", "z"),
}

# The largest length each prefix can state, by (kind, len_encoding): why max_len is capped.
PREFIX_MAX = {
    ("llvar", "ascii"): 99,
    ("llvar", "bcd"): 99,
    ("llvar", "binary"): 255,
    ("lllvar", "ascii"): 999,
    ("lllvar", "bcd"): 999,
    ("lllvar", "binary"): 65535,
}
fixed_len_max_units = 999  # a fixed field longer than this is a typo in the dialect file
field_number_min = 2  # field 1 is the secondary bitmap, computed by the codec
field_number_max = 128  # no tertiary bitmap: fields 129-192 are not supported

_FIELD_KEYS = {
    "kind",
    "max_len",
    "encoding",
    "content",
    "len_encoding",
    "pad_left",
    "pad_right",
    "desc",
}
_TOP_KEYS = {"name", "description", "mti_encoding", "bitmap_encoding", "fields", "subfields",
             "fallbacks"}
_BY_FIELD_SECTIONS = ("subfields", "fallbacks")  # field number -> list: a base's, per field
_SUBFIELD_KEYS = {"name", "size", "desc"}
_PART_KEYS = {"field", "at", "size"}


class DialectError(ValueError):
    """A dialect file is malformed: a configuration bug, found at start-up."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one data field sits on the wire.

    max_len counts characters for ascii, bytes for binary and digits for bcd; the length
    prefix of a variable field counts the same unit. pad_left/pad_right (one character, at
    most one of them) fill a short ascii fixed field to max_len, and for bcd give the nibble
    that rounds an odd number of digits up to whole bytes.
    """

    number: int
    kind: str
    max_len: int
    encoding: str
    content: str
    len_encoding: str = "ascii"
    pad_left: str = ""
    pad_right: str = ""
    desc: str = ""

    @property
    def key(self) -> str:
        return str(self.number)


@dataclass(frozen=True, slots=True)
class SubField:
    """One positional sub-field of a field (UnionPay's F60: 60.1, 60.2, ...)."""

    name: str
    size: int  # characters (digits of a bcd field)
    desc: str = ""


@dataclass(frozen=True, slots=True)
class FallbackPart:
    """One piece of a field rebuilt from others: `size` characters of field `source` from
    character `at` (1-based), or the whole (fixed) field when the dialect file names no `at`."""

    source: str  # field key
    at: int  # 1-based
    size: int  # characters (digits of a bcd field)
    whole: bool  # the whole field: its value must be `size` characters


@dataclass(frozen=True, slots=True)
class Fallback:
    """A field a terminal may leave out, and the parts of other fields read in its place."""

    field: str  # its key
    parts: tuple[FallbackPart, ...]
    content: str  # the field's content type: what the joined parts must hold


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    mti_encoding: str
    bitmap_encoding: str
    fields: tuple[FieldSpec, ...]  # ascending field number
    description: str = ""
    # (field key, its sub-fields in order): data the codec does not need, read by the
    # channels and the toolbox through `subfield_values`.
    subfields: tuple[tuple[str, tuple[SubField, ...]], ...] = ()
    # (field key, its parts in order): what a terminal of this dialect may leave out and
    # where it is read instead (protocols/iso_fallbacks.py), e.g. F7 from F13 + F12.
    fallbacks: tuple[Fallback, ...] = ()

    def field(self, number: int) -> FieldSpec | None:
        for spec in self.fields:
            if spec.number == number:
                return spec
        return None

    def subfield_values(self, key: str, value: str) -> dict[str, str]:
        """A field's value split into its named sub-fields, by position; a shorter value
        carries the first ones (the last possibly cut short). {} for a field without."""
        layout = dict(self.subfields).get(key, ())
        out, start = {}, 0
        for sub in layout:
            if start >= len(value):
                break
            out[sub.name] = value[start:start + sub.size]
            start += sub.size
        return out


def load_dialect(name_or_path: str | os.PathLike[str]) -> Dialect:
    """Read a shipped dialect by name ("iso87ascii") or any dialect file by path."""
    source = _read_source(name_or_path)
    return dialect_from_dict(_with_base(source, (source.identity,)), source.origin)


def shipped_dialects() -> list[str]:
    folder = resources.files(__package__).joinpath("dialects")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


@dataclass(frozen=True, slots=True)
class _Source:
    """A dialect file's table as written, and where it came from."""

    data: dict
    origin: str  # how errors name it: the shipped name, or the path
    identity: str  # the same file, however it was named (to find a loop of bases)
    folder: Path | None  # where a relative `base` path is read from (None: the cwd)


def _read_source(name_or_path: str | os.PathLike[str], folder: Path | None = None
                 ) -> _Source:
    """A shipped dialect by name, or a file by path (relative to `folder` when given)."""
    raw = os.fspath(name_or_path)
    looks_like_path = raw.endswith(".toml") or os.sep in raw or "/" in raw
    if looks_like_path:
        path = folder / raw if folder is not None else Path(raw)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DialectError(f"cannot read dialect file {path}: {exc}") from None
        return _Source(_toml(text, str(path)), str(path), str(path.resolve()), path.parent)
    shipped = resources.files(__package__).joinpath("dialects", f"{raw}.toml")
    if not shipped.is_file():
        known = ", ".join(shipped_dialects())
        raise DialectError(f"no shipped dialect {raw!r} (shipped: {known}); or give a path")
    return _Source(_toml(shipped.read_text(encoding="utf-8"), raw), raw, f"shipped:{raw}",
                   None)


def _toml(text: str, origin: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DialectError(f"{origin}: not valid TOML: {exc}") from None


def _with_base(source: _Source, chain: tuple[str, ...]) -> dict:
    """The file's table with its `base` dialect's under it: what the file does not say is
    the base's. `chain`: the identities of the files read so far (a loop is an error)."""
    data, origin = source.data, source.origin
    name = data.get("base")
    if name is None:
        return data
    if not isinstance(name, str) or not name:
        raise DialectError(f"{origin}: 'base' must be a dialect name or a path")
    try:
        base = _read_source(name, source.folder)
    except DialectError as exc:
        raise DialectError(f"{origin}: base {name!r}: {exc}") from None
    if base.identity in chain:
        raise DialectError(f"{origin}: base {name!r} is a loop: {base.origin} is already "
                           "one of this dialect's bases")
    inherited = _with_base(base, (*chain, base.identity))
    dialect_from_dict(inherited, base.origin)  # the base's own mistakes name the base
    return _overridden(inherited, data, origin, name)


def _overridden(base: dict, data: dict, origin: str, base_name: str) -> dict:
    """`data` over `base`: its own name; top-level keys replaced; each field it lists has
    the keys it gives replaced (the field must be the base's); [subfields] and [fallbacks]
    replaced field by field."""
    if "name" not in data:
        raise DialectError(f"{origin}: 'name' is required (a dialect with a base names "
                           "itself)")
    merged = {**base, **{key: value for key, value in data.items() if key != "base"}}
    fields = data.get("fields", {})
    if not isinstance(fields, dict):
        raise DialectError(f"{origin}: [fields] must be a table")
    merged["fields"] = dict(base["fields"])
    for key, change in fields.items():
        where = f"{origin} field {key}"
        if key not in base["fields"]:
            raise DialectError(f"{where}: not a field of base {base_name!r} (a dialect with a "
                               "base changes its fields, it adds none)")
        if not isinstance(change, dict):
            raise DialectError(f"{where}: must be a table")
        merged["fields"][key] = {**base["fields"][key], **change}
    for section in _BY_FIELD_SECTIONS:
        mine, theirs = data.get(section), base.get(section)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            merged[section] = {**theirs, **mine}
    return merged


def dialect_from_dict(data: dict, origin: str = "<dict>") -> Dialect:
    """Check a parsed dialect table and freeze it; every mistake names the file and field.
    A table with a `base` is for `load_dialect`, which reads the base's file."""
    _no_unknown_keys(data, _TOP_KEYS, origin)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise DialectError(f"{origin}: 'name' must be a non-empty string")
    mti = _choice(data, "mti_encoding", MTI_ENCODINGS, origin, "ascii")
    bitmap = _choice(data, "bitmap_encoding", BITMAP_ENCODINGS, origin, "hex")
    table = data.get("fields")
    if not isinstance(table, dict) or not table:
        raise DialectError(f"{origin}: a [fields] table is required")
    specs = [_field_from_dict(key, value, f"{origin} field {key}") for key, value in table.items()]
    specs.sort(key=lambda s: s.number)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise DialectError(f"{origin}: 'description' must be a string")
    subfields = _subfields(data.get("subfields", {}), {s.key for s in specs}, origin)
    fallbacks = _fallbacks(data.get("fallbacks", {}), {s.key: s for s in specs}, origin)
    return Dialect(name, mti, bitmap, tuple(specs), description, subfields, fallbacks)


def _subfields(table: object, keys: set[str], origin: str
               ) -> tuple[tuple[str, tuple[SubField, ...]], ...]:
    """[subfields]: field number -> list of {name, size, desc}, checked like fields."""
    out = []
    for key, layout, where in _lists_by_field(table, "subfields", "{name, size}", origin):
        if key not in keys:
            raise DialectError(f"{where}: not a field of the dialect")
        subs = []
        for entry in layout:
            _no_unknown_keys(entry, _SUBFIELD_KEYS, where)
            name, size, desc = entry.get("name"), entry.get("size"), entry.get("desc", "")
            if not isinstance(name, str) or not name.isidentifier():
                raise DialectError(f"{where}: 'name' must be an identifier, not {name!r}")
            if type(size) is not int or size < 1:
                raise DialectError(f"{where} {name}: 'size' must be a positive integer")
            if not isinstance(desc, str):
                raise DialectError(f"{where} {name}: 'desc' must be a string")
            subs.append(SubField(name, size, desc))
        if len({sub.name for sub in subs}) != len(subs):
            raise DialectError(f"{where}: sub-field names repeat")
        out.append((key, tuple(subs)))
    return tuple(out)


def _fallbacks(table: object, specs: dict[str, FieldSpec], origin: str
               ) -> tuple[Fallback, ...]:
    """[fallbacks]: field number -> list of {field, at, size}: parts of other fields that,
    joined, make the field's whole fixed width."""
    out = []
    for key, parts, where in _lists_by_field(table, "fallbacks", "{field, at, size}", origin):
        target = specs.get(key)
        if target is None or target.kind != "fixed" or target.encoding == "binary":
            raise DialectError(f"{where}: not a fixed text or bcd field of the dialect")
        made = tuple(_fallback_part(part, key, specs, where) for part in parts)
        width = sum(part.size for part in made)
        if width != target.max_len:
            raise DialectError(f"{where}: the parts make {width} characters, the field is "
                               f"{target.max_len}")
        out.append(Fallback(key, made, target.content))
    sources = {part.source for fallback in out for part in fallback.parts}
    chained = sources & {fallback.field for fallback in out}
    if chained:  # one step only: a field read instead is itself sent
        raise DialectError(f"{origin} fallbacks: field {min(chained)} is read instead of "
                           "another and has a fallback of its own")
    return tuple(out)


def _lists_by_field(table: object, section: str, keys: str, origin: str
                    ) -> list[tuple[str, list[dict], str]]:
    """(field key, its list of tables, where) of a [section] table, in field order; each
    value checked to be a non-empty list of tables."""
    if not isinstance(table, dict):
        raise DialectError(f"{origin}: [{section}] must be a table")
    out = []
    for key, entries in sorted(table.items(), key=lambda item: int(item[0])
                               if item[0].isdigit() else 0):
        where = f"{origin} {section} of {key}"
        if not isinstance(entries, list) or not entries or not all(
                isinstance(entry, dict) for entry in entries):
            raise DialectError(f"{where}: a list of {keys} tables is required")
        out.append((key, entries, where))
    return out


def _fallback_part(part: dict, target: str, specs: dict[str, FieldSpec], where: str
                   ) -> FallbackPart:
    _no_unknown_keys(part, _PART_KEYS, where)
    number = part.get("field")
    source = specs.get(str(number)) if type(number) is int else None
    if source is None or source.key == target or source.encoding == "binary":
        raise DialectError(f"{where}: 'field' must be another text or bcd field of the "
                           f"dialect, not {number!r}")
    if "at" not in part and "size" not in part:
        if source.kind != "fixed":
            raise DialectError(f"{where}: field {number} is variable: give 'at' and 'size'")
        return FallbackPart(source.key, 1, source.max_len, True)
    at, size = part.get("at"), part.get("size")
    if type(at) is not int or type(size) is not int or at < 1 or size < 1:
        raise DialectError(f"{where}: 'at' (1-based) and 'size' must be positive integers")
    if at + size - 1 > source.max_len:
        raise DialectError(f"{where}: characters {at}..{at + size - 1} are past field "
                           f"{number}'s {source.max_len}")
    return FallbackPart(source.key, at, size, False)


def _field_from_dict(key: str, table: object, where: str) -> FieldSpec:
    if not key.isdigit() or not field_number_min <= int(key) <= field_number_max:
        raise DialectError(f"{where}: field numbers run {field_number_min}..{field_number_max}")
    if not isinstance(table, dict):
        raise DialectError(f"{where}: must be a table")
    _no_unknown_keys(table, _FIELD_KEYS, where)
    kind = _choice(table, "kind", KINDS, where)
    encoding = _choice(table, "encoding", ENCODINGS, where)
    content = _choice(table, "content", tuple(CONTENT_CHARS), where)
    if content not in CONTENT_BY_ENCODING[encoding]:
        raise DialectError(f"{where}: {encoding} encoding cannot carry content {content!r}")
    len_encoding = _choice(table, "len_encoding", LEN_ENCODINGS, where, "ascii")
    max_len = table.get("max_len")
    limit = fixed_len_max_units if kind == "fixed" else PREFIX_MAX[(kind, len_encoding)]
    if type(max_len) is not int or not 1 <= max_len <= limit:
        raise DialectError(f"{where}: max_len must be an integer 1..{limit} for {kind}")
    pad_left, pad_right = _pads(table, where, encoding, content)
    desc = table.get("desc", "")
    if not isinstance(desc, str):
        raise DialectError(f"{where}: 'desc' must be a string")
    return FieldSpec(
        int(key), kind, max_len, encoding, content, len_encoding, pad_left, pad_right, desc
    )


def _pads(table: dict, where: str, encoding: str, content: str) -> tuple[str, str]:
    pad_left = table.get("pad_left", "")
    pad_right = table.get("pad_right", "")
    for pad in (pad_left, pad_right):
        if not isinstance(pad, str) or len(pad) > 1:
            raise DialectError(f"{where}: a pad is one character")
    if pad_left and pad_right:
        raise DialectError(f"{where}: give pad_left or pad_right, not both")
    pad = pad_left or pad_right
    if pad and encoding == "binary":
        raise DialectError(f"{where}: binary fields are not padded")
    if pad and encoding == "bcd" and pad not in "0123456789ABCDEFabcdef":
        raise DialectError(f"{where}: a bcd pad is a hex nibble")
    allowed = CONTENT_CHARS[content]
    if pad and encoding == "ascii" and allowed is not None and pad not in allowed:
        raise DialectError(f"{where}: pad {pad!r} is not valid {content} content")
    if encoding == "bcd" and not pad:
        pad_left = "0"  # odd digit counts need a nibble; '0' on the left is the usual one
    return pad_left, pad_right


def _choice(table: dict, key: str, options: tuple, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value not in options:
        raise DialectError(f"{where}: {key} must be one of {', '.join(options)}, not {value!r}")
    return value


def _no_unknown_keys(table: dict, known: set[str], where: str) -> None:
    unknown = set(table) - known
    if unknown:  # a typo such as 'maxlen' must not silently fall back to a default
        raise DialectError(f"{where}: unknown keys {sorted(unknown)}")
