"""The vocabulary (protocols/codes.py) is complete: every channel maps every code, and every
code, reason and state that any source file uses (Python or Lua, found by scanning) is
declared, with a code its reason may come with."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from protocols import jd, wechat
from protocols.codes import (
    APPROVING,
    CARD_STATUS_DECLINES,
    DECLINING,
    INITIAL_STATES,
    MEANINGS,
    REASON_CODES,
    REPAYMENT_KIND,
    REPORTED_STATES,
    TRANSITIONS,
    CardStatus,
    Code,
    Reason,
    TransactionState,
    may_move,
    reason_of,
)
from protocols.messages import AuthResponse

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SOURCES = sorted(
    path for folder in ("protocols", "switch", "loadtest") for path in (ROOT / folder).rglob("*.py")
    if path.name != "codes.py")
LUA_SOURCES = sorted((ROOT / "switch" / "lua").glob("*.lua"))
CODE_SHAPE = re.compile(r"[0-9A-Z]{2}")


# --- the vocabulary itself ------------------------------------------------------------------


def test_every_code_has_a_meaning_and_every_reason_its_codes():
    assert set(MEANINGS) == set(Code)
    assert set(REASON_CODES) == set(Reason)
    for reason, codes in REASON_CODES.items():
        assert codes and codes <= DECLINING, reason


def test_approving_and_declining_split_the_codes():
    assert APPROVING == {"00", "10"}
    assert APPROVING | DECLINING == set(Code) and not APPROVING & DECLINING
    assert AuthResponse(response_code="10").approved
    assert not AuthResponse(response_code="05").approved


def test_approving_holds_plain_strings():
    # Looked up once per answer with a str read off the wire: plain members match it on the
    # set's fast path (the enum's would be equal too, at the cost of a comparison call).
    assert {type(code) for code in APPROVING} == {str}


@pytest.mark.parametrize(("text", "reason"), [
    ("card_lost", Reason.CARD_LOST),
    ("mcc_blocked:7995", Reason.MCC_BLOCKED),
    ("field_41_missing", Reason.FIELD_MISSING),
    ("original_already_expired", Reason.ORIGINAL_ALREADY),
    ("original_already_captured_or_refunded", Reason.ORIGINAL_ALREADY_CAPTURED_OR_REFUNDED),
    ("format:tradeNum 'x y' is malformed", Reason.FORMAT),
    ("mcc_blocked:", None),  # a template needs its parameter
    ("card_lots", None),
    ("", None),
])
def test_reason_of_finds_ids_and_templates(text, reason):
    assert reason_of(text) == reason


def test_transaction_states_move_only_forward():
    assert set(INITIAL_STATES.values()) <= set(TransactionState)
    # Final, except that a void takes back the reversal that made a record reversed.
    for final in (TransactionState.REVERSED, TransactionState.EXPIRED, TransactionState.REPAID):
        assert not any(old == final and operation != "void"
                       for (old, _), operation in TRANSITIONS.items())
    assert not any(old == TransactionState.EXPIRED for old, _ in TRANSITIONS)
    assert may_move("pending", "captured", "capture")
    assert not may_move("pending", "captured", "reversal")
    assert not may_move("captured", "pending", "capture")


# --- every channel maps every code ----------------------------------------------------------


def test_jd_has_a_result_code_for_every_code():
    assert set(jd.RESULT_CODES) == set(Code)
    for code, (result, desc) in jd.RESULT_CODES.items():
        assert len(result) == 6 and desc, code
    approvals = {jd.RESULT_CODES[code][0] for code in APPROVING}
    declines = {jd.RESULT_CODES[code][0] for code in DECLINING}
    assert not approvals & declines


def test_wechat_has_an_err_code_for_every_decline_and_a_trade_state_for_every_state():
    assert set(wechat.ERR_CODES) == DECLINING
    assert set(wechat.TRADE_STATES) == REPORTED_STATES
    for code in Code:
        error = wechat.err_code(AuthResponse(response_code=code))
        assert (error is None) == (code in APPROVING), code


# --- scanning the sources -------------------------------------------------------------------


def _text_of(node: ast.expr) -> str | None:
    """A string constant as written, or an f-string with each hole filled by 'x'."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "x"
                       for part in node.values)
    return None


def _vocabulary_value(node: ast.expr, problems: list[str], where: str) -> str | None:
    """`Code.X` / `Reason.X` / `Reason.X.format(...)`: its value (a problem if undeclared)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "format":
        value = _vocabulary_value(node.func.value, problems, where)
        return None if value is None else re.sub(r"\{[^}]*\}", "x", value)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id in ("Code", "Reason"):
        enum_type = Code if node.value.id == "Code" else Reason
        if node.attr not in enum_type.__members__:
            problems.append(f"{where}: {node.value.id}.{node.attr} is not declared")
            return None
        return enum_type[node.attr].value
    return _text_of(node)


def python_pairs(source: str, name: str) -> tuple[list[tuple[str, str | None, str]], list[str]]:
    """(code, reason, where) of every decision a Python source writes, and undeclared names.

    A decision is a call argument or a two-element tuple where a response code (a literal
    shaped like one, or a `Code` member) is followed by a reason, or a call with the
    keywords `response_code=` / `reason=`.
    """
    pairs: list[tuple[str, str | None, str]] = []
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute):
            _vocabulary_value(node, problems, where)
        sequences = []
        if isinstance(node, ast.Call):
            sequences.append(node.args)
            keywords = {k.arg: k.value for k in node.keywords}
            if "response_code" in keywords:
                code = _vocabulary_value(keywords["response_code"], problems, where)
                reason = keywords.get("reason")
                if code is not None:
                    pairs.append((code, reason and _vocabulary_value(reason, problems, where),
                                  where))
        if isinstance(node, ast.Tuple) and len(node.elts) == 2:
            sequences.append(node.elts)
        for items in sequences:
            for first, second in zip(items, items[1:], strict=False):
                code = _vocabulary_value(first, [], where)
                is_code = isinstance(first, ast.Attribute) or (
                    code is not None and CODE_SHAPE.fullmatch(code))
                reason = _vocabulary_value(second, [], where)
                if code is not None and is_code and reason is not None \
                        and re.search("[a-z]", reason):
                    pairs.append((code, reason, where))
    return pairs, problems


LUA_PAIR = re.compile(r"(?:decline|remember)\('([^']*)', '([^']*)'( \.\.)?|\{'([^']*)', '([^']*)'"
                      r"( \.\.)?")
LUA_CODE = re.compile(r"(?:answer|decline|remember)\('([^']*)'|\{'([^']*)',")
LUA_STATE_WRITE = re.compile(r"(?:'HSET', |txn_set\(|txn_create\()[^)]*'state', '([a-z_]+)'")
LUA_STATE_TEST = re.compile(r"state [=~]= '([a-z_]+)'")


def lua_pairs(source: str, name: str) -> list[tuple[str, str | None, str]]:
    pairs = []
    for number, line in enumerate(source.splitlines(), 1):
        for match in LUA_PAIR.finditer(line):
            code, reason, joined = (match.group(1), match.group(2), match.group(3)) \
                if match.group(1) is not None else (match.group(4), match.group(5),
                                                    match.group(6))
            if not CODE_SHAPE.fullmatch(code):
                continue  # a table of other strings, or token_use's '' ("decide on the card")
            pairs.append((code, reason + "x" if joined else reason, f"{name}:{number}"))
        for match in LUA_CODE.finditer(line):
            code = match.group(1) if match.group(1) is not None else match.group(2)
            if CODE_SHAPE.fullmatch(code):
                pairs.append((code, None, f"{name}:{number}"))
    return pairs


def undeclared(pairs: list[tuple[str, str | None, str]]) -> list[str]:
    problems = []
    for code, reason, where in pairs:
        if code not in set(Code):
            problems.append(f"{where}: response code {code!r} is not in protocols/codes.py")
            continue
        if not reason:
            continue
        declared = reason_of(reason)
        if declared is None:
            problems.append(f"{where}: reason {reason!r} is not in protocols/codes.py")
        elif code not in REASON_CODES[declared]:
            problems.append(f"{where}: reason {reason!r} does not come with code {code}")
    return sorted(set(problems))


def test_every_code_and_reason_in_the_python_sources_is_declared():
    found, problems = [], []
    for path in PYTHON_SOURCES:
        pairs, names = python_pairs(path.read_text(), str(path.relative_to(ROOT)))
        found += pairs
        problems += names + undeclared(pairs)
    assert not problems, "\n".join(problems)
    assert len({reason for _, reason, _ in found if reason}) >= 30  # the scan sees them


def test_every_code_and_reason_in_the_lua_is_declared():
    found, problems = [], []
    for path in LUA_SOURCES:
        pairs = lua_pairs(path.read_text(), path.name)
        found += pairs
        problems += undeclared(pairs)
    assert not problems, "\n".join(problems)
    assert len({reason for _, reason, _ in found if reason}) >= 25  # the scan sees them


def test_the_scans_catch_an_undeclared_code_or_reason():
    python = 'decline("77", "card_lost")\nx = (Code.FORMAT_ERROR, "no_such_reason")\n' \
             'AuthResponse(response_code=Code.NOPE)\nraise FieldError("30", "card_lost")\n'
    pairs, names = python_pairs(python, "sample.py")
    problems = names + undeclared(pairs)
    assert any("'77'" in p for p in problems)
    assert any("no_such_reason" in p for p in problems)
    assert any("Code.NOPE" in p for p in problems)
    assert any("does not come with code 30" in p for p in problems)
    lua = "return decline('41', 'card_lsot')\nreturn {'X9', 'card_lost'}\n" \
          "return decline('12', 'original_already_' .. state)\n"
    problems = undeclared(lua_pairs(lua, "sample.lua"))
    assert len(problems) == 2 and "card_lsot" in problems[0] and "'X9'" in problems[1]


def test_the_lua_card_status_table_is_the_vocabulary_s():
    prelude = (ROOT / "switch" / "lua" / "prelude.lua").read_text()
    table = prelude[prelude.index("STATUS_DECLINES = {"):prelude.index("}\n", prelude.index(
        "STATUS_DECLINES = {"))]
    in_lua = {status: (code, reason) for status, code, reason
              in re.findall(r"(\w+) = \{'(\w+)', '(\w+)'", table)}
    assert in_lua == {status.value: (code.value, reason.value)
                      for status, (code, reason) in CARD_STATUS_DECLINES.items()}
    assert set(CARD_STATUS_DECLINES) == set(CardStatus) - {CardStatus.ACTIVE}


def python_states(source: str, name: str) -> list[str]:
    """Problems with the states a Python source compares `.state` with."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) \
                and node.left.attr == "state":
            for other in node.comparators:
                text = _text_of(other)
                if text is not None and text not in REPORTED_STATES:
                    problems.append(f"{name}:{node.lineno}: state {text!r} is not declared")
    return problems


def test_every_state_the_python_compares_with_is_declared():
    problems = [problem for path in PYTHON_SOURCES
                for problem in python_states(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)
    assert python_states('if t.state == "pendign": pass', "sample.py")


# The ledger operation each Lua file performs (authorize.lua and repay.lua create
# transactions instead: the kinds each makes, INITIAL_STATES).
LUA_OPERATIONS = {"capture.lua": "capture", "reverse.lua": "reversal", "holds.lua": "expiry",
                  "void.lua": "void"}
LUA_CREATIONS = {"authorize.lua": ("auth", "sale"), "repay.lua": (REPAYMENT_KIND,)}


def test_the_lua_writes_only_declared_states_by_declared_transitions():
    written_anywhere = set()
    for path in LUA_SOURCES:
        source = path.read_text()
        written = set(LUA_STATE_WRITE.findall(source))
        tested = set(LUA_STATE_TEST.findall(source))
        written_anywhere |= written
        assert written | tested <= set(TransactionState), path.name
        for state in written:
            made_here = state in {INITIAL_STATES[kind]
                                  for kind in LUA_CREATIONS.get(path.name, ())}
            operation = LUA_OPERATIONS.get(path.name, "")
            moved_here = any(may_move(old, state, operation) for old in tested)
            assert made_here or moved_here, f"{path.name} writes state {state!r} from " \
                f"{sorted(tested)}: not a declared transition of {operation or 'no operation'}"
    assert written_anywhere == set(TransactionState)


def test_docs_list_every_code_reason_and_state():
    page = (ROOT / "docs" / "codes.md").read_text()
    for value in [*Code, *Reason, *TransactionState, *CardStatus]:
        assert f"`{value.value}`" in page, value
