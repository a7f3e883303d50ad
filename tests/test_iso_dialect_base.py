"""A dialect file that names a `base` dialect and changes some of its fields: the shipped SM4
dialects (the base with a 16-byte F52, nothing else), how a file is laid over its base, and
each mistake refused with the file and key named."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import iso8583
import pytest

from protocols.iso8583 import DialectError, Iso8583Error, get_codec, load_dialect
from tests.test_unionpay_dialect import PEER_SPEC, from_peer, to_peer

TINY = """
name = "tiny"
description = "the base"
[fields]
3 = { kind = "fixed", max_len = 6, encoding = "ascii", content = "n", pad_left = "0" }
52 = { kind = "fixed", max_len = 16, encoding = "ascii", content = "h", desc = "PIN" }
60 = { kind = "lllvar", max_len = 17, encoding = "ascii", content = "n" }
61 = { kind = "lllvar", max_len = 29, encoding = "ascii", content = "n" }
[subfields]
60 = [{ name = "type", size = 2 }, { name = "batch", size = 6 }]
61 = [{ name = "original", size = 6 }]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def child(base: str = "tiny.toml", body: str = "[fields.52]\nmax_len = 32\n",
          name: str = 'name = "wide"\n') -> str:
    return f'{name}base = "{base}"\n{body}'


@pytest.mark.parametrize(("name", "base", "f52_len"), [("unionpay-sm4", "unionpay", 16),
                                                        ("iso87ascii-sm4", "iso87ascii", 32)])
def test_a_shipped_sm4_dialect_is_its_base_with_a_16_byte_f52(name, base, f52_len):
    ours, theirs = load_dialect(name), load_dialect(base)
    assert ours.name == name and ours.description != theirs.description
    assert (ours.mti_encoding, ours.bitmap_encoding) == (theirs.mti_encoding,
                                                         theirs.bitmap_encoding)
    assert (ours.subfields, ours.fallbacks) == (theirs.subfields, theirs.fallbacks)
    assert [spec.number for spec in ours.fields] == [spec.number for spec in theirs.fields]
    changed = [(a, b) for a, b in zip(ours.fields, theirs.fields, strict=True) if a != b]
    assert [a.number for a, _ in changed] == [52]
    [(wide, narrow)] = changed
    assert wide.max_len == f52_len == 2 * narrow.max_len
    assert dataclasses.replace(wide, max_len=narrow.max_len, desc=narrow.desc) == narrow


def test_unionpay_sm4_carries_a_16_byte_pin_block_as_pyiso8583_reads_it():
    codec = get_codec("unionpay-sm4")
    sale = {"t": "0200", "2": "6253680000000018", "3": "000000", "4": "000000012800",
            "11": "000123", "22": "051", "41": "TERM0001", "52": bytes(range(16)),
            "60": "22000001"}
    wire = codec.encode(sale)
    peer = copy.deepcopy(PEER_SPEC)
    peer["52"]["max_len"] = 16
    assert wire == bytes(iso8583.encode(copy.deepcopy(to_peer(sale)), peer)[0])
    assert from_peer(iso8583.decode(bytearray(wire), peer)[0]) == sale == codec.decode(wire)
    with pytest.raises(Iso8583Error, match="field 52"):
        codec.encode({**sale, "52": bytes(8)})  # a 3DES block does not fit


def test_a_file_changes_only_what_it_says(tmp_path):
    write(tmp_path, "tiny.toml", TINY)
    body = ('[fields.52]\nmax_len = 32\n'
            '[subfields]\n61 = [{ name = "stan", size = 6 }]\n')
    wide = load_dialect(write(tmp_path, "wide.toml", child(body=body)))
    tiny = load_dialect(tmp_path / "tiny.toml")
    assert wide.name == "wide" and wide.description == "the base"  # inherited when unsaid
    assert wide.field(52) == dataclasses.replace(tiny.field(52), max_len=32)  # desc kept
    assert wide.field(3) == tiny.field(3) and wide.field(60) == tiny.field(60)
    # [subfields] replaced field by field: 60's kept, 61's the file's own.
    assert wide.subfield_values("60", "22000001") == {"type": "22", "batch": "000001"}
    assert wide.subfield_values("61", "000123") == {"stan": "000123"}
    assert get_codec(wide).encode({"t": "0200", "52": "AB" * 16})[-32:] == b"AB" * 16


def test_a_base_of_a_base_and_a_path_relative_to_the_file(tmp_path):
    write(tmp_path, "tiny.toml", TINY)
    (tmp_path / "sub").mkdir()
    write(tmp_path, "sub/wide.toml", child(base="../tiny.toml"))
    narrow = write(tmp_path, "narrow.toml", child(
        base="sub/wide.toml", body="[fields.3]\nmax_len = 4\n", name='name = "narrow"\n'))
    dialect = load_dialect(narrow)
    assert (dialect.name, dialect.field(3).max_len, dialect.field(52).max_len) == (
        "narrow", 4, 32)


def test_a_file_based_on_a_shipped_dialect(tmp_path):
    path = write(tmp_path, "mine.toml", child(base="unionpay-sm4",
                                              body="[fields.41]\ndesc = \"till\"\n"))
    dialect = load_dialect(path)
    assert dialect.field(52).max_len == 16 and dialect.field(41).desc == "till"
    assert dialect.fallbacks == load_dialect("unionpay").fallbacks


@pytest.mark.parametrize(("files", "words"), [
    # The base that does not exist: a shipped name, a path.
    ({"wide.toml": child(base="nosuch")},
     r"wide.toml: base 'nosuch': no shipped dialect 'nosuch' \(shipped: iso87ascii, "),
    ({"wide.toml": child(base="gone.toml")},
     r"wide.toml: base 'gone.toml': cannot read dialect file .*gone.toml"),
    ({"wide.toml": 'name = "wide"\nbase = 7\n'}, r"wide.toml: 'base' must be a dialect name"),
    ({"wide.toml": 'name = "wide"\nbase = ""\n'}, r"wide.toml: 'base' must be a dialect name"),
    # Loops: itself, and two files each the other's base.
    ({"wide.toml": child(base="wide.toml")},
     r"wide.toml: base 'wide.toml' is a loop: .*wide.toml is already one of"),
    ({"a.toml": child(base="b.toml"), "b.toml": child(base="a.toml")},
     r"b.toml: base 'a.toml' is a loop: .*a.toml is already one of"),
    # Changing what the base does not have, or not as a table.
    ({"wide.toml": child(body="[fields.53]\nmax_len = 16\n")},
     r"wide.toml field 53: not a field of base 'tiny.toml' \(a dialect with a base changes "),
    ({"wide.toml": child(body="[fields]\n52 = 32\n")}, r"wide.toml field 52: must be a table"),
    ({"wide.toml": 'name = "wide"\nbase = "tiny.toml"\nfields = 5\n'},
     r"wide.toml: \[fields\] must be a table"),
    ({"wide.toml": child(name="")}, r"wide.toml: 'name' is required \(a dialect with a base"),
    # What the file changes is checked as any field is, named by the file and field.
    ({"wide.toml": child(body="[fields.52]\nmax_len = 1000\n")},
     r"wide.toml field 52: max_len must be an integer 1..999"),
    ({"wide.toml": child(body="[fields.52]\nmaxlen = 32\n")},
     r"wide.toml field 52: unknown keys \['maxlen'\]"),
    ({"wide.toml": child(body="[fields.3]\npad_right = \"0\"\n")},
     r"wide.toml field 3: give pad_left or pad_right, not both"),
    ({"wide.toml": child(body='[fallbacks]\n3 = [{ field = 99 }]\n')},
     r"wide.toml fallbacks of 3: 'field' must be another text or bcd field"),
    ({"wide.toml": 'name = "wide"\nbase = "tiny.toml"\nmti_encoding = "ebcdic"\n'},
     r"wide.toml: mti_encoding must be one of"),
])
def test_mistakes_name_the_file_and_key(tmp_path, files, words):
    write(tmp_path, "tiny.toml", TINY)
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(DialectError, match=words):
        load_dialect(tmp_path / next(iter(files)))


def test_a_mistake_of_the_base_names_the_base(tmp_path):
    write(tmp_path, "tiny.toml", TINY.replace("max_len = 6", "max_len = 0"))
    path = write(tmp_path, "wide.toml", child())
    with pytest.raises(DialectError, match=r"tiny.toml field 3: max_len must be an integer"):
        load_dialect(path)


def test_a_base_that_is_not_toml_is_named(tmp_path):
    write(tmp_path, "tiny.toml", "name = \n")
    with pytest.raises(DialectError, match=r"wide.toml: base 'tiny.toml': .*tiny.toml: not "
                       "valid TOML"):
        load_dialect(write(tmp_path, "wide.toml", child()))
