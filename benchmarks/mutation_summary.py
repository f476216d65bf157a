"""Summarise a mutmut run (docs/testing.md): killed / survived / equivalent per source file.

Run from the directory that holds ``mutants/`` after ``mutmut run``. A survivor is counted as
*equivalent* only when its diff matches a rule below that cannot change what the code computes
on the CPU machines the suite runs on, or when docs/testing.md lists it, with its reason, in
a table row ``| `mutant name` | reason |`` (``--equivalents``); every other survivor counts
against the score. Message-text survivors (an error message's wording changed) are real
survivors, listed apart; mutants of rule factories run at import (``IMPORT_TIME``) are
reported as not measurable. A mutant no test covers counts as survived; a timeout as killed
(shown apart). Score = (killed + timeout) / (killed + timeout + survived).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
from collections import Counter
from pathlib import Path

EQUIVALENT_RULES = {
    "device (CPU only)": re.compile(r"\.to\(None\)|device=None|device = None|model_device\(None\)"),
    "progress display": re.compile(r"progress(: bool)? ?=|disable=|desc="),
    "softmax dim of 2-D logits": re.compile(r"softmax\([^)]*(dim=None\)|, \))"),
    "same value": re.compile(r'float\("-INF"\)|method="(IBP|CROWN-IBP|CROWN)"'),
}
MESSAGE_RULE = re.compile(r'(Error|Warning)\(|^\+\s*f?"')
IMPORT_TIME = {"x_max_pool_function", "x_pool_function", "x_rearrange_method", "x_rearrange_function"}
"""Rule factories that op_map calls when it is imported: mutmut switches a mutant on in the
forked worker, after the import, so their mutants never run (not measurable, not scored)."""
HAND_EQUIVALENT = re.compile(r"^\| `(harp_plugin\.[^`]+)` \|")
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {5, 33}, {24, -24, 36, 152, 255}


def classify(diff: str) -> str:
    added = "\n".join(line for line in diff.splitlines() if line.startswith("+ "))
    for label, rule in EQUIVALENT_RULES.items():
        if rule.search(added):
            return f"equivalent: {label}"
    if any(MESSAGE_RULE.search(line) and ("XX" in line or line.isupper() or "None)" in line)
           for line in added.splitlines()):
        return "survived: message text"
    return "survived"


def function_sources(mutated_file: Path) -> dict[str, str]:
    """Source of every function in a file mutmut rewrote (methods included), by name."""
    lines = mutated_file.read_text().splitlines()
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])
            for node in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def diff(sources: dict[str, str], mutant: str) -> str:
    """The mutant's changed lines against the original function (what ``mutmut show`` prints)."""
    function = mutant.rsplit(".", 1)[-1]
    orig_name = function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
    mutated = sources.get(function, "").replace(function, orig_name, 1)
    lines = difflib.ndiff(sources.get(orig_name, "").splitlines(), mutated.splitlines())
    return "\n".join(line for line in lines if line.startswith(("+ ", "- ")))


def hand_equivalents(path: Path | None) -> set[str]:
    """Mutant names listed as equivalent (with a reason) in a markdown table of ``path``."""
    if path is None:
        return set()
    return {m.group(1) for line in path.read_text().splitlines() if (m := HAND_EQUIVALENT.match(line))}


def outcome(name: str, code: int | None, sources: dict[str, str], by_hand: set[str]) -> str:
    if code is None:
        return "not run"
    if name.rsplit(".", 1)[-1].split("__mutmut_")[0] in IMPORT_TIME:
        return "import time"
    if code in KILLED:
        return "killed"
    if code in TIMEOUT:
        return "timeout"
    if code not in SURVIVED | NO_TESTS:
        return "suspicious"
    if name in by_hand:
        return "equivalent: by hand"
    label = classify(diff(sources, name))
    return "survived: no tests" if code in NO_TESTS and label == "survived" else label


def summarise(by_hand: set[str]) -> dict[str, Counter]:
    table: dict[str, Counter] = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        sources = function_sources(meta.with_suffix(""))
        counts = Counter(outcome(name, code, sources, by_hand) for name, code in codes.items())
        if codes and counts["not run"] < len(codes):
            table[str(meta.relative_to("mutants"))[: -len(".meta")]] = counts
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equivalents", type=Path, help="markdown file listing equivalent mutants (docs/testing.md)")
    parser.add_argument("--survivors", action="store_true", help="also list every survivor counted against the score")
    args = parser.parse_args()
    by_hand = hand_equivalents(args.equivalents)
    print("| file | mutants | killed | timeout | survived (message text, no tests) | equivalent (by hand) "
          "| not measurable | score |")
    print("|---|---|---|---|---|---|---|---|")
    for path, counts in summarise(by_hand).items():
        equivalent = sum(v for k, v in counts.items() if k.startswith("equivalent"))
        messages, untested = counts["survived: message text"], counts["survived: no tests"]
        survived = counts["survived"] + messages + untested + counts["suspicious"]
        detected = counts["killed"] + counts["timeout"]
        score = f"{100 * detected / (detected + survived):.1f} %" if detected + survived else "–"
        not_run = f" ({counts['not run']} not run)" if counts["not run"] else ""
        print(f"| {path} | {sum(counts.values())}{not_run} | {counts['killed']} | {counts['timeout']} | {survived} "
              f"({messages}, {untested}) | {equivalent} ({counts['equivalent: by hand']}) | {counts['import time']} "
              f"| {score} |")
    if args.survivors:
        list_survivors(by_hand)


def list_survivors(by_hand: set[str]) -> None:
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        sources = function_sources(meta.with_suffix(""))
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            if code is not None and outcome(name, code, sources, by_hand).startswith("survived"):
                print(f"\n{name}\n{diff(sources, name)}")


if __name__ == "__main__":
    main()
