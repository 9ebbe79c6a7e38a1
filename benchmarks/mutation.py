"""Mutation testing of the modules that decide things (mutmut 3), module by module: ``make mutation``.

Each module is mutated in its own copy of the work tree (``benchmarks/out/mutation/<module>``,
ignored by git; the work tree itself is never changed), against only the fast test files that
exercise it, on one worker process at low priority. mutmut records which of those tests reach
each mutated function and runs only them per mutant, so a module takes seconds to minutes.

mutmut mutates function and method bodies (operators, comparisons, constants, arguments,
return values), not module-level constants: a threshold defined at module level is checked by
the tests that pin it, and by hand (the refusal threshold, see tests/test_retrieval_refusal.py).

Usage::

    python benchmarks/mutation.py                      # every module, in the order below
    python benchmarks/mutation.py promotion budget     # some modules
    python benchmarks/mutation.py --list               # the modules, their files and tests

Prints killed / total per module, writes the table between the markers in
``benchmarks/mutation_scores.md`` (the survivors judged equivalent are listed there by hand)
and every survivor's diff to ``benchmarks/out/mutation/<module>/survivors.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "mutation"
SCORES = ROOT / "benchmarks" / "mutation_scores.md"
BEGIN, END = "<!-- mutation-scores:begin -->", "<!-- mutation-scores:end -->"
MUTMUT = Path(sys.executable).parent / "mutmut"


@dataclass(frozen=True)
class Module:
    name: str
    files: tuple[str, ...]  # source files to mutate
    tests: tuple[str, ...]  # the fast test files that exercise them
    functions: tuple[str, ...] = ()  # mutmut name globs: only these functions (default: all of the files)
    pytest_args: tuple[str, ...] = ()  # e.g. -k to leave out a test too slow to run per mutant


#: Processes sharing a GX project (20 s) and Data Docs on disk (4 s): too slow to run per mutant.
_SLOW_VALIDATION_TESTS = ("-k", "not parallel_processes and not file_mode")

MODULES: tuple[Module, ...] = (
    Module("promotion", ("tracseq_dagster/promotion.py",), ("tests/test_promotion_gate.py", "tests/test_promotion_decisions.py")),
    Module("traffic_split", ("tracseq_dagster/serving/traffic_split.py",), ("tests/test_traffic_split.py",)),
    Module("automl_budget", ("tracseq_dagster/automl/budget.py",), ("tests/test_automl_budget.py",)),
    Module(
        "registry",  # all but the tracking-server lease and the PostgreSQL advisory lock, which need
        # other processes and a server: test_registry_concurrency.py (a minute a run) covers them
        ("tracseq_dagster/registry.py",),
        ("tests/test_registry_unit.py",),
        tuple(
            f"tracseq_dagster.registry.xǁModelRegistryǁ{name}__*"
            for name in (
                "__init__",
                "register",
                "find_by_key",
                "version",
                "versions",
                "model_uri",
                "promote",
                "rollback",
                "history",
                "champion_stack",
                "_ensure_registered_model",
                "history_lock",
                "_record",
            )
        )
        + ("tracseq_dagster.registry.x__file_lock__*", "tracseq_dagster.registry.x__file_lock_in_folder__*"),
    ),
    Module(
        "retrieval_thresholds",  # the decision to answer, refuse or fall back; not the search itself
        ("tracseq_dagster/documents/retrieval.py", "tracseq_dagster/documents/answering.py"),
        # Tests without a LanceDB index: its runtime does not survive mutmut's fork per mutant.
        (
            "tests/test_answering_outcomes.py",
            "tests/test_retrieval_refusal.py::test_the_threshold_is_the_calibrated_value_and_a_passage_at_it_counts",
        ),
        (
            "tracseq_dagster.documents.retrieval.x_evidence_is_weak__*",
            "tracseq_dagster.documents.answering.x_answer_question__*",
            "tracseq_dagster.documents.answering.x_resolve_citations__*",
            "tracseq_dagster.documents.answering.x_retrieval_only__*",
        ),
    ),
    Module(
        "rules",  # what each rule flags (its mask) and the helpers the masks decide with; not the messages
        ("tracseq_dagster/rules.py",),
        ("tests/test_validation.py", "tests/test_rule_context.py", "tests/test_rule_masks.py"),
        (
            "tracseq_dagster.rules.xǁ*ǁmask__*",
            "tracseq_dagster.rules.xǁTypeRuleǁ_uncoercible__*",
            "tracseq_dagster.rules.xǁRuleContextǁ*",
            "tracseq_dagster.rules.x_whole_numbers__*",
            "tracseq_dagster.rules.x_has_contract_dtype__*",
            "tracseq_dagster.rules.x__locate_parse_issues__*",
        ),
        _SLOW_VALIDATION_TESTS,
    ),
    Module(
        "validation",
        ("tracseq_dagster/validation.py",),
        ("tests/test_validation.py", "tests/test_validation_outputs.py"),
        (),
        _SLOW_VALIDATION_TESTS,
    ),
    Module(
        "features",  # the functions that compute feature values; not the column plumbing and caching
        ("tracseq_dagster/features.py",),
        ("tests/test_features.py", "tests/test_feature_risk_terms.py"),
        tuple(
            f"tracseq_dagster.features.x_{name}__*"
            for name in (
                "purity_score",
                "_risk_terms",
                "_quality_risk_score",
                "_hours",
                "_coalesce",
                "_sums_before",
                "_history_aggregates",
                "_to_utc_timestamp",
                "feature_columns",
            )
        ),  # fmt: skip
    ),
)


def _copy_work_tree(target: Path) -> None:
    """Tracked and untracked (not ignored) files of the work tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _setup_cfg(module: Module) -> str:
    tests = [t for t in module.tests if (ROOT / t.split("::")[0]).exists()]
    lines = ["[mutmut]", "source_paths = tracseq_dagster", "only_mutate ="]
    lines += [f"    {f}" for f in module.files]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -m", "    not slow"]
    lines += [f"    {arg}" for arg in module.pytest_args]
    return "\n".join(lines) + "\n"


def _statuses(work: Module, folder: Path) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code  # type: ignore[import-not-found]

    found: dict[str, str] = {}
    for source in work.files:
        meta = folder / "mutants" / (source + ".meta")
        if not meta.exists():
            continue
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if not work.functions or any(re.fullmatch(_glob(g), key) for g in work.functions):
                found[key] = status_by_exit_code[code]
    return found


def _glob(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def run_module(module: Module) -> dict[str, object]:
    folder = OUT / module.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _copy_work_tree(folder)
    (folder / "setup.cfg").write_text(_setup_cfg(module))
    # pyproject's [tool.mutmut] would win over setup.cfg; the project keeps none there.
    env = {**os.environ, "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False", "DAGSTER_DISABLE_TELEMETRY": "1"}
    started = time.perf_counter()
    with (folder / "mutmut.log").open("w") as log:
        done = subprocess.run(
            ["nice", "-n", "10", str(MUTMUT), "run", "--max-children", "1", *module.functions],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    statuses = _statuses(module, folder)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted(k for k, s in statuses.items() if s not in ("killed", "timeout"))
    with (folder / "survivors.txt").open("w") as out:
        for key in survivors:
            diff = subprocess.run([str(MUTMUT), "show", key], cwd=folder, env=env, capture_output=True, text=True).stdout
            out.write(f"## {key}: {statuses[key]}\n{diff}\n")
    total = len(statuses)
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    return {
        "module": module.name, "total": total, "killed": killed, "counts": counts, "seconds": seconds,
        "exit": done.returncode, "score": killed / total if total else 0.0,
    }  # fmt: skip


def _table(results: list[dict[str, object]]) -> str:
    rows = ["| module | mutants | killed | survived | other | score | minutes |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        counts: dict[str, int] = r["counts"]  # type: ignore[assignment]
        survived = counts.get("survived", 0)
        other = r["total"] - r["killed"] - survived  # type: ignore[operator]
        rows.append(
            f"| {r['module']} | {r['total']} | {r['killed']} | {survived} | {other} | "
            f"{100 * r['score']:.0f}% | {r['seconds'] / 60:.1f} |"  # type: ignore[operator]
        )
    return "\n".join(rows)


def _write_scores(results: list[dict[str, object]]) -> None:
    text = SCORES.read_text() if SCORES.exists() else f"# Mutation scores\n\n{BEGIN}\n{END}\n"
    previous = {}
    if BEGIN in text:
        for line in text.split(BEGIN, 1)[1].split(END, 1)[0].splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 7 and cells[0] not in ("module", "---"):
                previous[cells[0]] = line
    table = _table(results).splitlines()
    merged = {**previous, **{line.split("|")[1].strip(): line for line in table[2:]}}
    order = [m.name for m in MODULES if m.name in merged]
    body = "\n".join(table[:2] + [merged[name] for name in order])
    head, tail = text.split(BEGIN, 1)[0], text.split(END, 1)[1]
    SCORES.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    args = parser.parse_args()
    by_name = {m.name: m for m in MODULES}
    if args.list:
        for m in MODULES:
            print(
                f"{m.name}: {', '.join(m.files)} <- {', '.join(m.tests)}{' (' + ', '.join(m.functions) + ')' if m.functions else ''}"
            )
        return
    unknown = [n for n in args.modules if n not in by_name]
    if unknown:
        parser.error(f"unknown modules {', '.join(unknown)}; choose from {', '.join(by_name)}")
    results = []
    for module in [by_name[n] for n in args.modules] or list(MODULES):
        result = run_module(module)
        results.append(result)
        print(f"{module.name}: {result['killed']}/{result['total']} killed ({100 * result['score']:.0f}%), "  # type: ignore[operator]
              f"{result['counts']} in {result['seconds']:.0f} s; survivors in {OUT / module.name / 'survivors.txt'}", flush=True)  # fmt: skip
        if result["exit"] != 0:
            print(f"  mutmut exited {result['exit']}: see {OUT / module.name / 'mutmut.log'}", flush=True)
        _write_scores(results)


if __name__ == "__main__":
    main()
