"""Mutation testing of the modules that guard money and input: `make mutants`.

Each mutant (one small change, see scripts/mutation.py) is written into a private copy of
the tree, never into the real files, and the module's own tests run against it
(`pytest -x`): a failing test or a timeout catches it; a passing suite lets it survive.
Prints the score per module and each survivor with its mutated line. Mutants judged
equivalent (no test could tell them apart) are declared with the reason in
scripts/mutants-equivalent.toml and are not run.

    scripts/mutants.py [--module switch/engine.py ...] [--jobs N] [--list] [--fail-under 90]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue
from typing import NamedTuple

if __package__ in (None, ""):  # run as a script: import the operators beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.mutation import Mutant, mutants_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS_FILE = ROOT / "scripts" / "mutants-equivalent.toml"

# The modules under mutation and the tests that must catch their mutants: the one table to
# edit when a module moves, splits or gets a new test file.
MODULE_TESTS: dict[str, tuple[str, ...]] = {
    "switch/engine.py": ("tests/test_engine_guards.py", "tests/test_jd_end_to_end.py",
                         "tests/test_policy_over_tcp.py", "tests/test_tokens.py",
                         "tests/test_policy_model.py"),
    "switch/policy.py": ("tests/test_policy.py", "tests/test_policy_bounds.py",
                         "tests/test_policy_explain.py",
                         "tests/test_velocity_window.py", "tests/test_policy_over_tcp.py",
                         "tests/test_policy_model.py"),
    "switch/ledger.py": ("tests/test_ledger_guards.py", "tests/test_velocity_window.py",
                         "tests/test_policy_over_tcp.py", "tests/test_cli.py",
                         "tests/test_ledger_model.py", "tests/test_ledger_fence.py",
                         "tests/test_ledger_void.py", "tests/test_ledger_advise.py",
                         "tests/test_statement.py"),
    "switch/statement.py": ("tests/test_statement.py", "tests/test_card_cli.py"),
    "protocols/framing.py": ("tests/test_framing.py", "tests/test_server.py"),
    "protocols/jd.py": ("tests/test_jd_codec.py", "tests/test_signed_answers.py",
                        "tests/test_jd_guards.py", "tests/test_jd_end_to_end.py",
                        "tests/test_stand_in_marking.py"),
    "protocols/wechat.py": ("tests/test_wechat_codec.py", "tests/test_signed_answers.py",
                            "tests/test_wechat_guards.py", "tests/test_wechat_end_to_end.py",
                            "tests/test_stand_in_marking.py"),
    "protocols/iso_channel.py": ("tests/test_iso_channel_guards.py", "tests/test_pos_codec.py",
                                 "tests/test_pos.py", "tests/test_stand_in_marking.py"),
    "protocols/xpay.py": ("tests/test_xpay_guards.py", "tests/test_xpay.py"),
    "protocols/iso_fallbacks.py": ("tests/test_iso_fallbacks.py",),
    "protocols/iso_mac.py": ("tests/test_iso_mac.py", "tests/test_iso_pin.py"),
    "protocols/iso_pin.py": ("tests/test_iso_pin.py",),
    "protocols/iso_session.py": ("tests/test_iso_pin.py", "tests/test_signon.py",
                                 "tests/test_signon_sm4.py"),
    "protocols/iso8583/dialect.py": ("tests/test_iso_dialect_base.py",
                                     "tests/test_iso_dialect_checks.py",
                                     "tests/test_iso8583_codec.py",
                                     "tests/test_unionpay_dialect.py",
                                     "tests/test_iso_fallbacks.py"),
    "protocols/channel.py": ("tests/test_signed_answers.py", "tests/test_jd_codec.py",
                             "tests/test_wechat_codec.py", "tests/test_jd_guards.py",
                             "tests/test_wechat_guards.py", "tests/test_stand_in_marking.py"),
    "switch/standin.py": ("tests/test_standin.py",),
    "switch/journal.py": ("tests/test_journal.py",),
    "switch/watch.py": ("tests/test_watch.py",),
}
# What a private copy of the tree leaves out: not needed by the tests, or large (docs/ stays:
# tests check the channel pages and docs/codes.md against the code).
COPY_IGNORED = (".git", ".venv", "bench-results", "__pycache__", ".hypothesis",
                ".pytest_cache", ".ruff_cache", ".run", "*.egg-info")
NICENESS = 10  # mutants run behind the interactive work on the machine
# A mutant's run may take this many times the unmutated run, plus the slack, before it
# counts as caught (an endless loop is a catch).
TIMEOUT_FACTOR = 3
TIMEOUT_SLACK_S = 10.0
BASELINE_TIMEOUT_S = 600.0  # the unmutated tests of one module
SCORE_FAIL_UNDER_PERCENT = 90.0

CAUGHT, SURVIVED, EQUIVALENT, TIMEOUT = "caught", "survived", "equivalent", "timeout"


class Declared(NamedTuple):
    """A mutant declared equivalent in the equivalents file."""

    module: str
    line: str  # the original source line, stripped
    mutation: str  # the mutant's description, as --list prints it
    why: str

    def matches(self, module: str, mutant: Mutant) -> bool:
        return (module, mutant.original_line, mutant.description) == (
            self.module, self.line, self.mutation)


class Job(NamedTuple):
    module: str
    mutant: Mutant


class Result(NamedTuple):
    job: Job
    outcome: str  # CAUGHT, SURVIVED or TIMEOUT (which counts as caught)


def read_equivalents(path: Path = EQUIVALENTS_FILE) -> list[Declared]:
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("equivalent", [])
    return [Declared(e["module"], e["line"].strip(), e["mutation"], e["why"]) for e in entries]


def split_equivalents(module: str, mutants: list[Mutant], declared: list[Declared]
                      ) -> tuple[list[Mutant], list[Mutant]]:
    """(mutants to run, mutants declared equivalent)."""
    mine = [d for d in declared if d.module == module]
    equivalent = [m for m in mutants if any(d.matches(module, m) for d in mine)]
    return [m for m in mutants if m not in equivalent], equivalent


def stale_declarations(module: str, mutants: list[Mutant], declared: list[Declared]
                       ) -> list[Declared]:
    """Declarations of this module that match no mutant any more (the code changed)."""
    return [d for d in declared if d.module == module
            and not any(d.matches(module, m) for m in mutants)]


# --- running ---------------------------------------------------------------------------------

class Sandbox:
    """A private copy of the tree where one mutant at a time is written and tested."""

    def __init__(self, root: Path, folder: Path) -> None:
        self.folder = folder
        shutil.copytree(root, folder, ignore=shutil.ignore_patterns(*COPY_IGNORED),
                        symlinks=True)
        self.python = str(root / ".venv" / "bin" / "python")
        if not Path(self.python).exists():
            self.python = sys.executable

    def run_tests(self, tests: Iterable[str], timeout_s: float) -> str:
        """CAUGHT when a test fails (or collection does), SURVIVED when all pass."""
        command = ["nice", "-n", str(NICENESS), self.python, "-m", "pytest", "-x", "-q",
                   "-p", "no:cacheprovider", f"--basetemp={self.folder / '.tmp'}", *tests]
        env = dict(os.environ, PYTHONPATH=str(self.folder))
        process = subprocess.Popen(command, cwd=self.folder, env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # pytest and the redis-server it started
            process.wait()
            return TIMEOUT
        finally:
            _kill_group(process.pid)
        return SURVIVED if code == 0 else CAUGHT

    def mutate(self, module: str, source: str) -> None:
        """Write the module's text and drop its cached bytecode (the size and second of the
        mutated file may equal the original's, which would fool the bytecode cache)."""
        path = self.folder / module
        path.write_text(source)
        for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            cached.unlink(missing_ok=True)


def _kill_group(pgid: int) -> None:
    """A test's redis-server outlives a crashed pytest: end the group it ran in."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Runner:
    def __init__(self, jobs: int, progress: Callable[[str], None]) -> None:
        self.jobs = jobs
        self.progress = progress
        self.workdir = Path(tempfile.mkdtemp(prefix="mutants-"))
        self.sandboxes: Queue[Sandbox] = Queue()

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def prepare(self, modules: list[str]) -> dict[str, float]:
        """Copies of the tree, and each module's unmutated test time (they must pass)."""
        for index in range(self.jobs):
            self.sandboxes.put(Sandbox(ROOT, self.workdir / f"tree-{index}"))
        self.progress(f"timing the tests of {len(modules)} modules unmutated")
        with ThreadPoolExecutor(self.jobs) as pool:
            return dict(zip(modules, pool.map(self._baseline, modules), strict=True))

    def _baseline(self, module: str) -> float:
        sandbox = self.sandboxes.get()
        try:
            started = time.monotonic()
            if sandbox.run_tests(MODULE_TESTS[module], BASELINE_TIMEOUT_S) != SURVIVED:
                raise SystemExit(f"the tests of {module} fail without a mutant: "
                                 f"{' '.join(MODULE_TESTS[module])}")
            return time.monotonic() - started
        finally:
            self.sandboxes.put(sandbox)

    def run(self, jobs: list[Job], baseline: dict[str, float]) -> list[Result]:
        sources = {module: (ROOT / module).read_text() for module in {j.module for j in jobs}}
        done: list[Result] = []
        lock = threading.Lock()
        started = time.monotonic()

        def one(job: Job) -> Result:
            sandbox = self.sandboxes.get()
            try:
                sandbox.mutate(job.module, job.mutant.apply(sources[job.module]))
                timeout_s = baseline[job.module] * TIMEOUT_FACTOR + TIMEOUT_SLACK_S
                outcome = sandbox.run_tests(MODULE_TESTS[job.module], timeout_s)
                sandbox.mutate(job.module, sources[job.module])
            finally:
                self.sandboxes.put(sandbox)
            result = Result(job, outcome)
            with lock:
                done.append(result)
                survivors = sum(r.outcome == SURVIVED for r in done)
                self.progress(f"{len(done)}/{len(jobs)} mutants run, {survivors} survived, "
                              f"{time.monotonic() - started:.0f} s")
            return result

        with ThreadPoolExecutor(self.jobs) as pool:
            return list(pool.map(one, jobs))


# --- reporting -------------------------------------------------------------------------------

class Score(NamedTuple):
    module: str
    mutants: int
    caught: int
    survived: list[Mutant]
    equivalent: int
    stale: list[Declared]

    @property
    def percent(self) -> float:
        judged = self.mutants - self.equivalent
        return 100.0 * self.caught / judged if judged else 100.0


def score(module: str, results: list[Result], equivalent: list[Mutant],
          stale: list[Declared]) -> Score:
    mine = [r for r in results if r.job.module == module]
    survived = [r.job.mutant for r in mine if r.outcome == SURVIVED]
    return Score(module, len(mine) + len(equivalent), len(mine) - len(survived), survived,
                 len(equivalent), stale)


def report(scores: list[Score], write: Callable[[str], None]) -> None:
    for s in scores:
        write(f"\n{s.module}: {s.mutants} mutants, {s.caught} caught, {len(s.survived)} "
              f"survived, {s.equivalent} equivalent: score {s.percent:.1f}%")
        for mutant in s.survived:
            write(f"  {s.module}:{mutant.line}: {mutant.description}\n"
                  f"      {mutant.original_line}\n    > {mutant.mutated_line}")
        for declared in s.stale:
            write(f"  stale declaration in {EQUIVALENTS_FILE.name} (no such mutant now): "
                  f"{declared.line!r}: {declared.mutation}")


def listing(module: str, mutants: list[Mutant], equivalent: list[Mutant]) -> Iterable[str]:
    for mutant in mutants:
        mark = " (declared equivalent)" if mutant in equivalent else ""
        yield f"{module}:{mutant.line}: {mutant.description}{mark}\n    > {mutant.mutated_line}"


def _progress_printer() -> Callable[[str], None]:
    interactive = sys.stderr.isatty()
    last = [0.0]

    def show(text: str) -> None:
        if interactive:
            sys.stderr.write(f"\r\033[K{text}")
        elif time.monotonic() - last[0] >= 10:  # a log file gets a line every ten seconds
            sys.stderr.write(text + "\n")
            last[0] = time.monotonic()
        sys.stderr.flush()

    return show


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULE_TESTS),
                        help="a module to mutate (repeatable; default: all of them)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="mutants tested at once (default: the CPU count)")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--fail-under", type=float, default=SCORE_FAIL_UNDER_PERCENT,
                        help="exit 1 when a module scores below this percentage")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modules = args.module or list(MODULE_TESTS)
    declared = read_equivalents()
    plans = {}
    for module in modules:
        mutants = mutants_of((ROOT / module).read_text())
        to_run, equivalent = split_equivalents(module, mutants, declared)
        plans[module] = (mutants, to_run, equivalent, stale_declarations(module, mutants,
                                                                         declared))
    if args.list:
        for module, (mutants, _, equivalent, _) in plans.items():
            print("\n".join(listing(module, mutants, equivalent)))
        return 0
    started = time.monotonic()
    progress = _progress_printer()
    runner = Runner(max(1, args.jobs), progress)
    try:
        baseline = runner.prepare(modules)
        jobs = [Job(module, m) for module, plan in plans.items() for m in plan[1]]
        results = runner.run(jobs, baseline)
    finally:
        runner.close()
    sys.stderr.write("\n")
    scores = [score(module, results, plan[2], plan[3]) for module, plan in plans.items()]
    report(scores, print)
    print(f"\n{len(results)} mutants run in {time.monotonic() - started:.0f} s "
          f"on {runner.jobs} jobs")
    failing = [s.module for s in scores if s.percent < args.fail_under]
    if failing:
        print(f"below {args.fail_under:g}%: {', '.join(failing)}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
