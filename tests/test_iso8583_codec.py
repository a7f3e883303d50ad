"""The ISO 8583 codec on its own: tables of bytes, errors, dialect files, plans vs generic."""

from __future__ import annotations

import functools
import pickle

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocols.iso8583 import (
    DialectError,
    Iso8583Error,
    decode,
    encode,
    get_codec,
    load_dialect,
    shipped_dialects,
)
from protocols.iso8583.codec import Codec
from tests.test_iso8583_interop import MESSAGES, for_dialect, message_strategy

ASCII = "iso87ascii"
BINARY = "iso87binary"
# 0200 with fields 2 (LLVAR), 3, 4, 11 and 41 in the ASCII dialect.
WIRE = b"02007020000000800000166259000000000001000000000000012345000123TERM0001"
FIELDS = {
    "t": "0200",
    "2": "6259000000000001",
    "3": "000000",
    "4": "000000012345",
    "11": "000123",
    "41": "TERM0001",
}


@functools.cache
def dialect_of(name: str):
    return load_dialect(name)


def fresh(name: str = ASCII) -> Codec:
    """A codec with no compiled plans (get_codec's is shared and warms up)."""
    return Codec(dialect_of(name))


@functools.cache
def generic(name: str) -> Codec:
    """A codec that never compiles plans: the reference the plan path must agree with."""
    return Codec(dialect_of(name), plans=False)


def warmed(name: str, wire: bytes) -> Codec:
    """A codec that has compiled the plan for this wire bitmap."""
    codec = fresh(name)
    for _ in range(3):
        try:
            codec.decode(wire)
        except Iso8583Error:
            pass
    return codec


def test_encode_decode_known_bytes():
    codec = get_codec(ASCII)
    assert codec.encode(FIELDS) == WIRE
    assert codec.decode(WIRE) == FIELDS
    assert encode(ASCII, FIELDS) == WIRE and decode(ASCII, WIRE) == FIELDS
    assert decode(codec, bytearray(WIRE)) == FIELDS
    assert codec.decode(memoryview(WIRE)) == FIELDS


def test_key_order_of_input_does_not_matter():
    codec = get_codec(ASCII)
    shuffled = dict(reversed(list(FIELDS.items())))
    assert codec.encode(shuffled) == WIRE


def test_shipped_dialects_and_cache():
    assert shipped_dialects() == [ASCII, "iso87ascii-sm4", BINARY, "unionpay",
                                  "unionpay-sm4"]
    assert get_codec(ASCII) is get_codec(ASCII)
    assert get_codec(BINARY).dialect.bitmap_encoding == "binary"


def test_fixed_fields_are_padded_on_encode():
    codec = get_codec(ASCII)
    wire = codec.encode({"t": "0200", "4": "12345", "41": "T1", "38": ""})
    decoded = codec.decode(wire)
    assert decoded["4"] == "000000012345"  # n: left with '0'
    assert decoded["41"] == "T1      "  # ans: right with spaces
    assert decoded["38"] == "      "


def test_padding_on_the_plan_path_too():
    codec = fresh()
    for _ in range(4):
        wire = codec.encode({"t": "0200", "3": "0", "4": "12345", "41": "T1"})
        assert wire.endswith(b"000000000000012345T1      ")


ENCODE_ERRORS = [
    ({"3": "000000"}, "MTI", "no MTI"),
    ({"t": "100", "3": "000000"}, "MTI", "not 4 digits"),
    ({"t": "01a0"}, "MTI", "not 4 digits"),
    ({"t": 100}, "MTI", "not 4 digits"),
    ({"t": "0100", "4": "1234567890123"}, "4", "over the maximum 12"),
    ({"t": "0100", "4": "12a"}, "4", "is not n"),
    ({"t": "0100", "4": "١٢٣"}, "4", "non-ASCII characters"),  # Arabic-Indic digits are not n
    ({"t": "0100", "2": "6259\u00b2"}, "2", "non-ASCII characters"),  # nor latin-1 superscript 2
    ({"t": "0100", "3": "00000\u00b2", "4": "0" * 12}, "3", "non-ASCII characters"),
    ({"t": "0100", "2": "62590000000000000001"}, "2", "over the maximum 19"),
    ({"t": "0100", "2": "6259 0000"}, "2", "is not n"),
    ({"t": "0100", "35": "6259?1"}, "35", "is not z"),
    ({"t": "0100", "28": "X00000100"}, "28", "is not xn"),
    ({"t": "0100", "39": "0!"}, "39", "is not an"),
    ({"t": "0100", "43": "caf\u00e9"}, "43", "non-ASCII characters"),
    ({"t": "0100", "52": "ZZ" * 8}, "52", "is not h"),
    ({"t": "0100", "52": "AB" * 7}, "52", "fixed at 16"),
    ({"t": "0100", "3": b"000000"}, "3", "must be a str, not bytes"),
    ({"t": "0100", "3": 0}, "3", "must be a str, not int"),
    ({"t": "0100", "1": "0000000000000000"}, "1", "bitmaps are computed"),
    ({"t": "0100", "p": "0000000000000000"}, "p", "bitmaps are computed"),
    ({"t": "0100", "129": "x"}, "129", "not a field of dialect"),
    ({"t": "0100", 3: "000000"}, "3", "not a field of dialect"),
]


def _valid_like(codec: Codec, fields: dict) -> dict | None:
    """A valid message with the same keys (so the same plan), or None if there is none."""
    out = {"t": "0100"}
    for key in fields:
        spec = codec.dialect.field(int(key)) if isinstance(key, str) and key.isdigit() else None
        if key == "t":
            continue
        if spec is None:
            return None
        size = spec.max_len if spec.kind == "fixed" else 1
        if spec.content == "b":
            out[key] = b"\x00" * size
        else:
            out[key] = ("C" if spec.content == "xn" else "") + "0" * (size - (spec.content == "xn"))
    return out


def _warmed_for_encode(fields: dict) -> Codec:
    codec = fresh()
    valid = _valid_like(codec, fields)
    for _ in range(3 if valid else 0):
        codec.encode(valid)
    return codec


@pytest.mark.parametrize(("fields", "field", "words"), ENCODE_ERRORS)
def test_encode_errors(fields, field, words):
    for codec in (fresh(), _warmed_for_encode(fields)):
        with pytest.raises(Iso8583Error) as info:
            codec.encode(fields)
        assert info.value.field == field
        assert info.value.offset is None
        assert words in str(info.value) and f"field {field}" in str(info.value)


def test_binary_dialect_value_types():
    codec = get_codec(BINARY)
    base = {"t": "0200", "3": "000000"}
    assert (
        codec.decode(codec.encode(base | {"55": bytearray(b"\x9f\x26\x00")}))["55"]
        == b"\x9f\x26\x00"
    )
    with pytest.raises(Iso8583Error, match="field 55: value must be bytes"):
        codec.encode(base | {"55": "9F2600"})
    with pytest.raises(Iso8583Error, match="field 64: 7 long, the field is fixed at 8"):
        codec.encode(base | {"64": b"\x00" * 7})
    with pytest.raises(Iso8583Error, match="field 55: 256 long, over the maximum 255"):
        codec.encode(base | {"55": b"\x00" * 256})


# (wire, field, offset, words): every decode error names a field and a byte offset.
DECODE_ERRORS = [
    (b"", "MTI", 0, "truncated"),
    (b"02", "MTI", 0, "truncated"),
    (b"02X0" + WIRE[4:], "MTI", 0, "not 4 digits"),
    (WIRE[:10], "bitmap", 4, "truncated"),
    (b"020070200000008000G0" + WIRE[20:], "bitmap", 4, "not 16 hex digits"),
    (b"0200 020000000800000" + WIRE[20:], "bitmap", 4, "not 16 hex digits"),
    (b"0200F020000000800000Z" * 16, "bitmap", 20, "not 16 hex digits"),
    (b"0200F02000000080000000", "bitmap", 20, "truncated"),
    (b"020070200000008000001", "2", 20, "truncated length prefix"),
    (b"020070200000008000001A" + WIRE[22:], "2", 20, "not 2 digits"),
    (b"0200702000000080000020" + WIRE[22:], "2", 20, "length 20 over the maximum 19"),
    (WIRE[:30], "2", 22, "truncated data: 8 of 16 bytes"),
    (WIRE[:40], "3", 38, "truncated data: 2 of 6 bytes"),
    (WIRE[:38] + b"00000X" + WIRE[44:], "3", 38, "is not n"),
    (WIRE[:22] + b"625900000000000\xff" + WIRE[38:], "2", 22, "is not n"),
    (WIRE[:22] + b"625900000000000\xb2" + WIRE[38:], "2", 22, "is not n"),  # latin-1 '²'
    (WIRE[:38] + b"00000\xb2" + WIRE[44:], "3", 38, "is not n"),
    (WIRE[:-8] + b"TERM\x000001", "41", len(WIRE) - 8, "is not ans"),
    (WIRE + b"X", "trailing", len(WIRE), "1 bytes after the last field"),
    (WIRE + b"\x00" * 5, "trailing", len(WIRE), "5 bytes after the last field"),
]


@pytest.mark.parametrize(("wire", "field", "offset", "words"), DECODE_ERRORS)
def test_decode_errors_name_field_and_offset(wire, field, offset, words):
    for codec in (fresh(), warmed(ASCII, WIRE), get_codec(ASCII)):
        with pytest.raises(Iso8583Error) as info:
            codec.decode(wire)
        error = info.value
        assert (error.field, error.offset) == (field, offset), str(error)
        assert words in error.reason
        assert str(error).startswith(f"field {field} at offset {offset}: ")
        assert isinstance(error, ValueError)


def test_decode_field_missing_from_dialect():
    small = load_dialect(ASCII)
    codec = Codec(type(small)(small.name, "ascii", "hex", small.fields[:10]))  # fields 2..11
    with pytest.raises(Iso8583Error) as info:
        codec.decode(WIRE)
    assert (info.value.field, info.value.offset) == ("41", 62)
    assert "announces a field the dialect lacks" in str(info.value)
    assert info.value.decoded == {k: v for k, v in FIELDS.items() if k != "41"}


def test_decode_errors_carry_what_was_read_before_the_defect():
    cases = [
        (WIRE[:3], {}),  # the MTI is cut: nothing read
        (WIRE[:10], {"t": "0200"}),  # the bitmap is cut
        (WIRE[:23], {"t": "0200"}),  # F2's length prefix read, its value cut
        (WIRE[:-1], {k: v for k, v in FIELDS.items() if k != "41"}),
        (WIRE + b"0", FIELDS),  # trailing bytes: every field was read
    ]
    for codec in (fresh(), warmed(ASCII, WIRE), get_codec(ASCII)):
        for wire, decoded in cases:
            with pytest.raises(Iso8583Error) as info:
                codec.decode(wire)
            assert info.value.decoded == decoded, wire
    assert Iso8583Error("MTI", None, "not 4 digits").decoded == {}


def _truncated_message(name: str) -> st.SearchStrategy:
    """(fields, wire) of a valid message and a cut somewhere inside it."""
    codec = get_codec(name)
    return message_strategy(name, exclude=frozenset()).flatmap(
        lambda fields: st.tuples(st.just(codec.decode(codec.encode(fields))),
                                 st.integers(0, len(codec.encode(fields)) - 1)))


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_a_truncated_message_s_error_holds_a_prefix_of_its_decode(name):
    """Cut anywhere: the error holds the decode's leading fields, up to the one cut."""
    codec = get_codec(name)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_truncated_message(name))
    def check(case):
        whole, cut = case
        with pytest.raises(Iso8583Error) as info:
            codec.decode(codec.encode(whole)[:cut])
        decoded, items = info.value.decoded, list(whole.items())
        assert list(decoded.items()) == items[: len(decoded)]
        if info.value.field not in ("MTI", "bitmap"):
            assert info.value.field == items[len(decoded)][0]  # the first field not read

    check()


def test_decode_rejects_non_bytes():
    with pytest.raises(TypeError):
        get_codec(ASCII).decode(WIRE.decode())


def test_error_pickles_with_attributes():
    error = pickle.loads(pickle.dumps(Iso8583Error("2", 20, "bad", {"t": "0200"})))
    assert (error.field, error.offset, error.reason, str(error), error.decoded) == (
        "2",
        20,
        "bad",
        "field 2 at offset 20: bad",
        {"t": "0200"},
    )


# ---- dialect files -----------------------------------------------------------------------

GOOD_TOML = """
name = "tiny"
mti_encoding = "ascii"
bitmap_encoding = "hex"
[fields]
3 = { kind = "fixed", max_len = 6, encoding = "ascii", content = "n", pad_left = "0" }
48 = { kind = "lllvar", max_len = 120, encoding = "ascii", content = "ans" }
"""


def test_user_dialect_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(GOOD_TOML)
    codec = get_codec(str(path))
    wire = codec.encode({"t": "0100", "3": "42", "48": "hello"})
    assert wire == b"01002000000000010000000042005hello"
    assert codec.decode(wire) == {"t": "0100", "3": "000042", "48": "hello"}
    with pytest.raises(Iso8583Error, match="field 4: not a field of dialect tiny"):
        codec.encode({"t": "0100", "4": "1"})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("3 = {", "3 = { maxlen = 6,"), "unknown keys"),
        (('kind = "fixed"', 'kind = "lvar"'), "kind must be one of"),
        (("max_len = 120", "max_len = 1000"), "max_len must be an integer 1..999"),
        (("max_len = 6", "max_len = 0"), "max_len must be an integer"),
        (('content = "ans"', 'content = "b"'), "cannot carry content"),
        (('pad_left = "0"', 'pad_left = "x"'), "is not valid n content"),
        (('pad_left = "0"', 'pad_left = "00"'), "a pad is one character"),
        (("3 = {", "1 = {"), "field numbers run 2..128"),
        (('bitmap_encoding = "hex"', 'bitmap_encoding = "base64"'), "bitmap_encoding must be"),
        (('name = "tiny"', "name = 5"), "'name' must be"),
        (("[fields]", "[fields]\nx"), "not valid TOML"),
    ],
)
def test_bad_dialect_files(tmp_path, change, words):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD_TOML.replace(*change, 1))
    with pytest.raises(DialectError, match=words):
        load_dialect(path)


def test_unknown_dialect_name():
    with pytest.raises(DialectError, match="no shipped dialect 'iso93'"):
        load_dialect("iso93")
    with pytest.raises(DialectError, match="cannot read"):
        load_dialect("/nonexistent/x.toml")


# ---- the compiled plan and the generic path agree -------------------------------------


@pytest.mark.parametrize("name", [ASCII, BINARY])
@pytest.mark.parametrize("label", MESSAGES)
def test_plan_path_is_used_and_agrees(name, label):
    fields = for_dialect(MESSAGES[label], name)
    codec = fresh(name)
    wire = codec.encode(fields)
    for _ in range(3):
        assert codec.encode(fields) == wire
        assert codec.decode(wire) == fields
    assert codec._enc_plans.plans and codec._dec_plans.plans  # plans were built


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_plan_equals_generic_on_random_messages(name):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(message_strategy(name, exclude=frozenset()))
    def check(fields):
        codec = fresh(name)
        results = [codec.encode(fields) for _ in range(3)]
        assert results[0] == results[1] == results[2]
        assert [codec.decode(results[0]) for _ in range(3)] == [fields] * 3

    check()


def _outcome(codec: Codec, wire: bytes):
    try:
        return ("ok", codec.decode(wire))
    except Iso8583Error as error:
        return ("error", error.field, error.offset, error.reason)


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_plan_and_generic_fail_alike_on_damaged_messages(name):
    """Same shape, damaged content: the plan path gives exactly the generic path's answer."""

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(message_strategy(name, exclude=frozenset()), st.data())
    def check(fields, data):
        wire = get_codec(name).encode(fields)
        header = 4 + (16 if name == ASCII else 8) * (
            2 if wire[4:5] >= (b"8" if name == ASCII else b"\x80") else 1
        )
        assume(len(wire) > header)
        at = data.draw(st.integers(header, len(wire) - 1))
        damaged = bytearray(wire)
        damaged[at] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(header, len(wire) + 2))
        damaged = bytes(damaged[:cut]) + b"\x00" * max(0, cut - len(wire))
        assert _outcome(warmed(name, wire), damaged) == _outcome(generic(name), damaged)

    check()


def _encode_outcome(codec: Codec, fields: dict):
    try:
        return ("ok", codec.encode(fields))
    except Iso8583Error as error:
        return ("error", error.field, error.offset, error.reason)


def _odd_value(spec) -> st.SearchStrategy:
    """Anything, with weight on the edges: one char short of, at, or one past the limit."""
    size = spec.max_len if spec else 4
    edge = st.integers(max(0, size - 1), size + 1)
    return st.one_of(
        edge.flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)),
        edge.flatmap(lambda n: st.text("0123456789ABCDEF =CD", min_size=n, max_size=n)),
        edge.flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.text(max_size=45),
        st.integers(),
        st.none(),
    )


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_plan_and_generic_encode_alike_on_odd_values(name):
    """Same keys, one value replaced by anything: padded or refused exactly as generic."""
    dialect = load_dialect(name)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(message_strategy(name, exclude=frozenset()), st.data())
    def check(fields, data):
        key = data.draw(st.sampled_from(sorted(fields)))
        spec = dialect.field(int(key)) if key != "t" else None
        odd = dict(fields, **{key: data.draw(_odd_value(spec))})
        codec = fresh(name)
        for _ in range(3):
            codec.encode(fields)
        assert _encode_outcome(codec, odd) == _encode_outcome(generic(name), odd)

    check()


def _edge_values(spec) -> list:
    """Valid at the limit, one short, one over, and of the wrong type."""
    unit = b"\x00" if spec.content == "b" else ("C" if spec.content == "xn" else "0")
    fill = b"\x00" if spec.content == "b" else "0"
    size = spec.max_len
    return [unit + fill * (n - 1) if n else unit[:0] for n in (size, size - 1, size + 1)] + [
        None,
        "\u00b2" * size,
    ]


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_plan_and_generic_agree_field_by_field(name):
    """Every field alone and beside its neighbour, at and around its limit, both paths."""
    dialect = load_dialect(name)
    for spec in dialect.fields:
        neighbour = dialect.field(spec.number + 1) or dialect.field(spec.number - 1)
        for keys in ([spec.key], sorted([spec.key, neighbour.key], key=int)):
            base = {"t": "0200"} | {k: _edge_values(dialect.field(int(k)))[0] for k in keys}
            codec = fresh(name)
            for _ in range(3):
                codec.decode(codec.encode(base))
            for value in _edge_values(spec):
                odd = base | {spec.key: value}
                assert _encode_outcome(codec, odd) == _encode_outcome(generic(name), odd), odd
            wire = codec.encode(base)
            # Each byte damaged, then cut there, then one byte more; the middle of a long
            # field adds nothing the first and last bytes do not already cover.
            positions = sorted(set(range(min(len(wire), 64))) | set(range(len(wire))[-8:]))
            for at in positions:
                for damaged in (wire[:at] + b"\xb2" + wire[at + 1 :], wire[:at], wire + b"0"):
                    assert _outcome(codec, damaged) == _outcome(generic(name), damaged), damaged


# ---- garbage in: only Iso8583Error out --------------------------------------------------


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_garbage_raises_only_iso8583_error(name):
    codec = get_codec(name)

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=300))
    def check(garbage):
        try:
            codec.decode(garbage)
        except Iso8583Error as error:  # what was read before the defect is a valid message
            if error.decoded:
                assert codec.decode(codec.encode(error.decoded)) == error.decoded

    check()


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_garbage_after_valid_header_raises_only_iso8583_error(name):
    codec = get_codec(name)
    prefix = codec.encode(
        {
            "t": "0100",
            **{k: v for k, v in for_dialect(MESSAGES["0200 purchase"], name).items() if k != "t"},
        }
    )
    header = prefix[: 4 + (32 if name == ASCII else 16)]

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=300), st.sampled_from([b"", b"0", b"1", b"9", b"99", b"999"]))
    def check(garbage, digits):
        try:
            codec.decode(header + digits + garbage)
        except Iso8583Error as error:
            assert error.decoded["t"] == "0100"
            assert codec.decode(codec.encode(error.decoded)) == error.decoded

    check()


@pytest.mark.parametrize("name", [ASCII, BINARY])
def test_every_truncation_of_a_valid_message_is_an_error(name):
    codec = get_codec(name)
    for label, message in MESSAGES.items():
        wire = codec.encode(for_dialect(message, name))
        for cut in range(len(wire)):
            with pytest.raises(Iso8583Error):
                codec.decode(wire[:cut])
                pytest.fail(f"{label} cut at {cut} decoded")
