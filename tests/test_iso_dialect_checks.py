"""A dialect table's checks (protocols/iso8583/dialect.py), sans-IO: the characters each
content type admits and the largest length each prefix states, as the codec has them; each
mistake refused with where it is; defaults; what a file with a base keeps of its base's
[fallbacks]; records that nothing can change."""

from __future__ import annotations

import dataclasses

import pytest

from protocols.iso8583 import Codec, DialectError, Iso8583Error, SubField, load_dialect
from protocols.iso8583 import dialect as dialect_module
from protocols.iso8583.dialect import CONTENT_CHARS, dialect_from_dict
from tests.test_iso_dialect_base import write
from tests.test_iso_fallbacks import dialect_with


def table(**fields: dict) -> dict:
    return {"name": "x", "fields": {key.removeprefix("f"): spec for key, spec in
                                    fields.items()}}


def accepts(spec: dict, value: str | bytes) -> bool:
    codec = Codec(dialect_from_dict(table(f3=spec)))
    try:
        codec.encode({"t": "0100", "3": value})
    except Iso8583Error:
        return False
    return True


@pytest.mark.parametrize("content", ["n", "an", "ans", "z", "xn", "h"])  # all but raw "b"
def test_each_content_s_characters_are_the_ones_the_codec_takes(content):
    """CONTENT_CHARS checks pads and fallback parts; the codec checks values: they agree."""
    one = {"kind": "fixed", "max_len": 1, "encoding": "ascii", "content": content}
    two = {**one, "max_len": 2}  # xn: a sign, then digits
    taken = {chr(c) for c in range(128)
             if accepts(one, chr(c)) or accepts(two, "C" + chr(c)) or accepts(two, chr(c) + "0")}
    assert taken == set(CONTENT_CHARS[content])


# The largest length each prefix can state: two or three decimal digits (as text or bcd),
# one or two bytes (binary).
PREFIXES = [("llvar", "ascii", 99), ("llvar", "bcd", 99), ("llvar", "binary", 255),
            ("lllvar", "ascii", 999), ("lllvar", "bcd", 999), ("lllvar", "binary", 65535)]


@pytest.mark.parametrize(("kind", "len_encoding", "largest"), PREFIXES)
def test_each_length_prefix_s_largest_length(kind, len_encoding, largest):
    spec = {"kind": kind, "encoding": "binary", "content": "b", "len_encoding": len_encoding}
    codec = Codec(dialect_from_dict(table(f3={**spec, "max_len": largest})))
    wire = codec.encode({"t": "0100", "3": bytes(largest)})
    assert codec.decode(wire)["3"] == bytes(largest)
    with pytest.raises(DialectError) as raised:
        dialect_from_dict(table(f3={**spec, "max_len": largest + 1}))
    assert str(raised.value) == (f"<dict> field 3: max_len must be an integer 1..{largest} "
                                 f"for {kind}")


N3 = {"kind": "fixed", "max_len": 3, "encoding": "ascii", "content": "n"}
B8 = {"kind": "fixed", "max_len": 8, "encoding": "binary", "content": "b"}
BCD = {"kind": "fixed", "max_len": 3, "encoding": "bcd", "content": "n"}

MISTAKES = [
    ({"name": "x"}, "<dict>: a [fields] table is required"),
    ({"name": "x", "fields": {}}, "<dict>: a [fields] table is required"),
    ({"name": "x", "fields": "3"}, "<dict>: a [fields] table is required"),
    ({**table(f3=N3), "description": 5}, "<dict>: 'description' must be a string"),
    (table(f3=5), "<dict> field 3: must be a table"),
    (table(f3={**N3, "desc": 5}), "<dict> field 3: 'desc' must be a string"),
    (table(f3={**B8, "pad_left": "0"}), "<dict> field 3: binary fields are not padded"),
    (table(f3={**BCD, "pad_left": "G"}), "<dict> field 3: a bcd pad is a hex nibble"),
    ({**table(f3=N3), "subfields": "3"}, "<dict>: [subfields] must be a table"),
    ({**table(f3=N3), "subfields": {"3": []}},
     "<dict> subfields of 3: a list of {name, size} tables is required"),
    ({**table(f3=N3), "subfields": {"3": [{"name": "a", "size": 3, "desc": 5}]}},
     "<dict> subfields of 3 a: 'desc' must be a string"),
    ({**table(f3=N3), "fallbacks": {"3": []}},
     "<dict> fallbacks of 3: a list of {field, at, size} tables is required"),
]


@pytest.mark.parametrize(("data", "error"), MISTAKES)
def test_each_mistake_is_named_with_where_it_is(data, error):
    with pytest.raises(DialectError) as raised:
        dialect_from_dict(data)
    assert str(raised.value) == error


def test_a_fallback_part_is_a_whole_field_only_without_at_and_size():
    with pytest.raises(DialectError, match="'at' \\(1-based\\) and 'size' must be positive"):
        dialect_from_dict(dialect_with({"7": [{"field": 13, "at": 1}, {"field": 12}]}))
    # One character is a part: F7 = F13 + the first 5 of F12 + the first of F42.
    parts = [{"field": 13}, {"field": 12, "at": 1, "size": 5}, {"field": 42, "at": 1, "size": 1}]
    [fallback] = dialect_from_dict(dialect_with({"7": parts})).fallbacks
    assert [(part.source, part.size, part.whole) for part in fallback.parts] == [
        ("13", 4, True), ("12", 5, False), ("42", 1, False)]


def test_defaults_a_table_may_leave_out():
    dialect = dialect_from_dict({**table(f3=BCD, f4={**BCD, "pad_right": "F"}),
                                 "subfields": {"3": [{"name": "a", "size": 3, "desc": "A"}]}})
    assert dialect.field(3).pad_left == "0"  # odd digit counts: a 0 nibble on the left
    assert (dialect.field(4).pad_left, dialect.field(4).pad_right) == ("", "F")
    assert Codec(dialect).encode({"t": "0100", "3": "123"})[-2:] == bytes.fromhex("0123")
    assert dialect.subfields == (("3", (SubField("a", 3, "A"),)),)


def test_a_file_with_a_base_replaces_the_base_s_fallbacks_field_by_field(tmp_path):
    base = load_dialect("unionpay")
    assert {fallback.field for fallback in base.fallbacks} == {"7", "18"}
    path = write(tmp_path, "mine.toml", 'name = "mine"\nbase = "unionpay"\n[fallbacks]\n'
                                        '18 = [{ field = 42, at = 1, size = 4 }]\n')
    fallbacks = {fallback.field: fallback for fallback in load_dialect(path).fallbacks}
    assert fallbacks["7"] == {f.field: f for f in base.fallbacks}["7"]  # kept
    assert [(part.source, part.at, part.size) for part in fallbacks["18"].parts] == [
        ("42", 1, 4)]


def test_every_record_of_a_dialect_is_frozen_and_slotted():
    """A dialect is compiled once and shared by every connection (get_codec caches it):
    nothing may change one, and slots keep the codec's attribute reads quick."""
    records = [value for value in vars(dialect_module).values()
               if dataclasses.is_dataclass(value) and value.__module__ == dialect_module.__name__]
    assert {record.__name__ for record in records} == {
        "FieldSpec", "SubField", "FallbackPart", "Fallback", "Dialect", "_Source"}
    for record in records:
        assert record.__dataclass_params__.frozen, record.__name__
        assert "__slots__" in vars(record), record.__name__
