"""Mutation score of the fast test suite: how many realistic single-line mistakes it catches.

The mutations are listed in tests/mutations.md (file, original line, mutated line, why). Each is
applied to a private copy of the tree, never to the working tree; the fast (`not slow`) tests
mapped to the mutated module (`MODULE_TESTS`) run against the copy with `-x`, and a failure or
a timeout kills the mutant. Before any mutant runs, the copy must import as `tfsal` and the
unmutated copy must pass every mapped test file.

    .venv/bin/python scripts/mutation_score.py               # every mutation
    .venv/bin/python scripts/mutation_score.py S1 O3 --keep  # some, keeping the copy
    .venv/bin/python scripts/mutation_score.py --check       # only locate the lines
    .venv/bin/python scripts/mutation_score.py --exclude test_rule_edges.py  # an older suite
    .venv/bin/python scripts/mutation_score.py --source /tmp/snapshot  # another tree
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIST = ROOT / "tests" / "mutations.md"
PYTHON = ROOT / ".venv" / "bin" / "python"
TIMEOUT_S = 900  # a mutant that hangs the tests counts as killed

# Module (path prefix) -> fast test files that exercise it (tests/mutations.md has the table).
MODULE_TESTS = {
    "tfsal/signed.py": ["test_signed.py", "test_rule_edges.py"],
    "tfsal/overrides.py": ["test_rectified.py", "test_rectgrad_reference.py",
                           "test_rule_edges.py"],
    "tfsal/methods/": ["test_methods.py", "test_ig_graded.py", "test_rectified.py",
                       "test_definitions.py"],
    "tfsal/nonlinear.py": ["test_nonlinear.py", "test_nonlinear_step.py"],
    "tfsal/metrics/": ["test_signed.py", "test_metrics.py", "test_retraining.py",
                       "test_definitions.py"],
    "tfsal/experiments/": ["test_retraining.py", "test_definitions.py"],
    "tfsal/targets.py": ["test_inputs.py", "test_cli_parity.py", "test_definitions.py"],
    "tfsal/files.py": ["test_folder_run.py", "test_definitions.py"],
}
IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", "*.pyc",
                                 "tfsal_out", "demo_out", ".ruff_cache")


@dataclass(frozen=True)
class Mutation:
    key: str
    title: str
    file: str
    original: str
    mutated: str


def read_mutations(path: Path = LIST) -> list[Mutation]:
    """The entries of tests/mutations.md: `### KEY title` then `- file:`, `- original:`,
    `- mutated:` lines whose value is the text between the first and the last backtick."""
    entries, current = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"### (\S+) (.*)", line)
        if heading:
            current = {"key": heading[1], "title": heading[2]}
            entries.append(current)
            continue
        field = re.match(r"- (file|original|mutated): `(.*)`\s*$", line)
        if field and current is not None:
            current[field[1]] = field[2]
    mutations = []
    for entry in entries:
        missing = {"file", "original", "mutated"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: entry {entry['key']} lacks {sorted(missing)}")
        mutations.append(Mutation(**entry))
    keys = [m.key for m in mutations]
    if len(set(keys)) != len(keys):
        raise SystemExit(f"{path}: duplicate keys {sorted(k for k in keys if keys.count(k) > 1)}")
    return mutations


def apply(mutation: Mutation, text: str) -> str:
    """`text` with the one line equal to `mutation.original` replaced; SystemExit if that line
    occurs zero times or more than once (the list must follow the code)."""
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if line == mutation.original]
    if len(hits) != 1:
        raise SystemExit(f"{mutation.key}: expected the line exactly once in {mutation.file}, "
                         f"found it {len(hits)} times:\n    {mutation.original!r}")
    lines[hits[0]] = mutation.mutated
    return "\n".join(lines)


def test_files(mutation: Mutation, tree: Path, excluded: set[str]) -> list[str]:
    for prefix, files in MODULE_TESTS.items():
        if mutation.file.startswith(prefix):
            return [f"tests/{name}" for name in files
                    if name not in excluded and (tree / "tests" / name).exists()]
    raise SystemExit(f"{mutation.key}: no tests mapped to {mutation.file} (MODULE_TESTS)")


def environment(tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONSTARTUP", None)
    return env


def run_tests(tree: Path, files: list[str], timeout: float) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout', seconds, the first failing test or the tail)."""
    command = [str(PYTHON), "-m", "pytest", "-x", "-q", "-m", "not slow", "-p",
               "no:cacheprovider", "-rfE", *files]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=tree, env=environment(tree), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    if done.returncode == 0:
        return "passed", seconds, ""
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    tail = failed[0] if failed else (done.stdout + done.stderr).strip().splitlines()[-1:]
    return "failed", seconds, tail if isinstance(tail, str) else " ".join(tail)


def check_imports_copy(tree: Path) -> None:
    code = "import tfsal, sys; sys.stdout.write(tfsal.__file__)"
    out = subprocess.run([str(PYTHON), "-c", code], cwd=tree, env=environment(tree),
                         capture_output=True, text=True, check=True).stdout
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the copy is not what Python imports: tfsal comes from {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", help="mutation keys (default: all)")
    parser.add_argument("--check", action="store_true", help="only locate the lines")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="TEST_FILE",
                        help="test files to leave out (e.g. to score an older suite)")
    parser.add_argument("--keep", action="store_true", help="keep the copy of the tree")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--source", type=Path, default=ROOT,
                        help="the tree to copy and mutate (default: this checkout)")
    parser.add_argument("--list", type=Path, default=LIST, help="the mutations (markdown)")
    args = parser.parse_args(argv)

    source = args.source.resolve()
    mutations = read_mutations(args.list)
    if args.keys:
        unknown = set(args.keys) - {m.key for m in mutations}
        if unknown:
            raise SystemExit(f"unknown mutation keys {sorted(unknown)}")
        mutations = [m for m in mutations if m.key in args.keys]
    for m in mutations:  # every line must be found before anything runs
        apply(m, (source / m.file).read_text(encoding="utf-8"))
    if args.check:
        print(f"{len(mutations)} mutations located")
        return 0

    workspace = Path(tempfile.mkdtemp(prefix="tfsal-mutants-"))
    tree = workspace / "tree"
    shutil.copytree(source, tree, ignore=IGNORED)
    excluded = set(args.exclude)
    try:
        check_imports_copy(tree)
        needed = sorted({f for m in mutations for f in test_files(m, tree, excluded)})
        status, seconds, detail = run_tests(tree, needed, args.timeout * 4)
        if status != "passed":
            raise SystemExit(f"the unmutated copy fails its tests ({status}): {detail}")
        print(f"unmutated copy passes {len(needed)} test files in {seconds:.0f} s", flush=True)
        killed = []
        for m in mutations:
            target = tree / m.file
            original = target.read_text(encoding="utf-8")
            target.write_text(apply(m, original), encoding="utf-8")
            try:
                status, seconds, detail = run_tests(tree, test_files(m, tree, excluded),
                                                    args.timeout)
            finally:
                target.write_text(original, encoding="utf-8")
            verdict = "survived" if status == "passed" else f"killed ({status})"
            killed += [m.key] if status != "passed" else []
            print(f"{m.key:4} {verdict:17} {seconds:5.0f} s  {m.title}"
                  + (f"\n      by {detail}" if detail else ""), flush=True)
        survivors = [m.key for m in mutations if m.key not in killed]
        print(f"\nkilled {len(killed)} / {len(mutations)} "
              f"({100 * len(killed) / len(mutations):.0f} %); survivors: "
              f"{', '.join(survivors) or 'none'}")
    finally:
        if args.keep:
            print(f"copy kept in {tree}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
