"""The mutation tool: its operators on a small sample module, and the verdict on a mutant
that a test kills, one that survives and one that never ends."""

from __future__ import annotations

import ast
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scripts import mutants
from scripts.mutation import mutants_of

SAMPLE = textwrap.dedent('''\
    """A sample module: its docstring is left alone."""

    LIMIT = 10


    def check(amount: int, name: str = "x") -> str | None:
        """Guards."""
        if amount > LIMIT and not name:
            raise ValueError("message text is left alone")
        if amount in (1, 2) or name is None:
            return "small"
        flag = True
        label = f"amount {amount}"
        return label if flag else None
    ''')


def changes(source: str = SAMPLE) -> set[tuple[int, str, str]]:
    return {(m.line, m.description, m.mutated_line) for m in mutants_of(source)}


def test_each_operator_makes_its_mutant_on_its_line():
    found = changes()
    expected = {
        (3, "10 -> 11", "LIMIT = (11)"),
        (3, "10 -> 9", "LIMIT = (9)"),
        (8, "`>` -> `>=`", "if (amount >= LIMIT) and not name:"),
        (8, "`and` -> `or`", "if (amount > LIMIT or not name):"),
        (8, "`not` removed", "if amount > LIMIT and (name):"),
        (8, "`if` condition -> True", "if True:"),
        (8, "`if` condition -> False", "if False:"),
        (9, "`raise` in guard removed", "pass"),
        (10, "`in` -> `not in`", "if (amount not in (1, 2)) or name is None:"),
        (10, "`is` -> `is not`", "if amount in (1, 2) or (name is not None):"),
        (10, "`or` -> `and`", "if (amount in (1, 2) and name is None):"),
        (11, "`return` in guard removed", "pass"),
        (11, "`return x` -> `return None`", "return None"),
        (11, "string 'small' -> ''", "return ''"),
        (12, "True -> False", "flag = False"),
        (14, "`return x` -> `return None`", "return None"),
    }
    assert expected <= found


def test_docstrings_annotations_fstrings_and_exception_messages_are_not_mutated():
    touched = {(line, description) for line, description, _ in changes()}
    assert not {line for line, _ in touched} & {1, 7, 13}  # docstrings, the f-string line
    assert (6, "string 'x' -> ''") in touched  # a default value is fair game...
    assert not [d for line, d in touched if line == 6 and "str" in d and "'x'" not in d]
    assert not [d for line, d in touched if line == 9 and d.startswith("string")]


def test_every_mutant_parses_and_keeps_the_line_numbers():
    original_lines = len(SAMPLE.splitlines())
    for mutant in mutants_of(SAMPLE):
        mutated = mutant.apply(SAMPLE)
        ast.parse(mutated)
        if "removed" not in mutant.description:  # a removed statement may take its lines
            assert len(mutated.splitlines()) == original_lines


def test_a_declared_equivalent_is_skipped_and_a_stale_one_reported():
    found = mutants_of(SAMPLE)
    declared = [
        mutants.Declared("m.py", "flag = True", "True -> False", "why"),
        mutants.Declared("m.py", "gone = 1", "1 -> 2", "the code changed"),
        mutants.Declared("other.py", "flag = True", "True -> False", "another module"),
    ]
    to_run, equivalent = mutants.split_equivalents("m.py", found, declared)
    assert [m.original_line for m in equivalent] == ["flag = True"]
    assert len(to_run) == len(found) - 1
    assert mutants.stale_declarations("m.py", found, declared) == [declared[1]]


PROJECT_CODE = textwrap.dedent("""\
    from time import sleep


    def bounded(amount):
        return amount <= 100


    def spin():
        return 0
    """)
PROJECT_TEST = textwrap.dedent("""\
    from project import bounded, spin

    def test_bounded():
        assert bounded(100) and not bounded(101)

    def test_spin():
        assert spin() == 0
    """)


def test_sandbox_classifies_killed_surviving_and_endless_mutants(tmp_path: Path):
    root = tmp_path / "root"
    (root / "tests").mkdir(parents=True)
    (root / "project.py").write_text(PROJECT_CODE)
    (root / "tests" / "test_project.py").write_text(PROJECT_TEST)
    tests = ["tests/test_project.py"]

    def outcome(sandbox: mutants.Sandbox, old: str, new: str, timeout_s: float = 60.0) -> str:
        sandbox.mutate("project.py", PROJECT_CODE.replace(old, new))
        return sandbox.run_tests(tests, timeout_s)

    first, second = (mutants.Sandbox(root, tmp_path / name) for name in ("first", "second"))
    with ThreadPoolExecutor(1) as pool:  # the endless one waits out its timeout meanwhile
        endless = pool.submit(outcome, second, "return 0", "while True:\n        sleep(1)", 1.5)
        assert outcome(first, "<=", "<") == mutants.CAUGHT
        assert outcome(first, "return 0", "return 0 if True else 1") == mutants.SURVIVED
        assert endless.result() == mutants.TIMEOUT
    assert (root / "project.py").read_text() == PROJECT_CODE  # the real file is untouched


def test_score_counts_equivalents_out_of_the_denominator():
    found = mutants_of(SAMPLE)[:4]
    results = [mutants.Result(mutants.Job("m.py", found[0]), mutants.CAUGHT),
               mutants.Result(mutants.Job("m.py", found[1]), mutants.TIMEOUT),
               mutants.Result(mutants.Job("m.py", found[2]), mutants.SURVIVED)]
    score = mutants.score("m.py", results, equivalent=[found[3]], stale=[])
    assert (score.mutants, score.caught, score.equivalent) == (4, 2, 1)
    assert score.survived == [found[2]]
    assert round(score.percent, 1) == 66.7
    lines: list[str] = []
    mutants.report([score], lines.append)
    assert "score 66.7%" in lines[0]
    assert f"m.py:{found[2].line}: {found[2].description}" in lines[1]


def test_every_mapped_module_and_test_file_exists():
    for module, tests in mutants.MODULE_TESTS.items():
        assert (mutants.ROOT / module).is_file(), module
        for test in tests:
            assert (mutants.ROOT / test).is_file(), test
