"""The pipeline's own FCALL packing: what Redis reads back is exactly the call we meant."""

from __future__ import annotations

import hiredis
from hypothesis import given
from hypothesis import strategies as st

from switch.pipeline import build_library, pack_fcall

texts = st.text(max_size=40)  # any Unicode: keys and arguments are sent UTF-8
arguments = st.one_of(texts, st.integers(-10**15, 10**15), st.binary(max_size=40))


@given(keys=st.lists(texts, max_size=8).map(tuple),
       args=st.lists(arguments, max_size=20).map(tuple))
def test_packed_fcall_reads_back_as_the_call(keys, args):
    function = build_library("t", ["-- no code"]).function("authorize").encode()
    packed = pack_fcall(function, keys, args)
    reader = hiredis.Reader()  # RESP commands and replies share the array syntax
    reader.feed(packed)
    expected = [b"FCALL", function, str(len(keys)).encode(), *[k.encode() for k in keys],
                *[a if isinstance(a, bytes) else str(a).encode() for a in args]]
    assert reader.gets() == expected
    assert reader.gets() is False  # nothing left over


def test_library_names_carry_the_code_version():
    first, second = build_library("t", ["-- one"]), build_library("t", ["-- two"])
    assert first.version != second.version
    assert first.code.startswith(f"#!lua name=t_{first.version}\n")
    assert first.function("authorize") == f"authorize_{first.version}"
