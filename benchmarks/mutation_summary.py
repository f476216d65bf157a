"""Summarise a mutmut run (docs/testing.md): killed / survived / equivalent per source file.

Run from the directory that holds ``mutants/`` after ``mutmut run``. A survivor is counted as
*equivalent* only when its diff matches a rule below that cannot change what the code computes
on the CPU machines the suite runs on; every other survivor counts against the score.
Message-text survivors (an error message's wording changed) are real survivors, listed apart.
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


def summarise() -> dict[str, Counter]:
    table: dict[str, Counter] = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        sources = function_sources(meta.with_suffix(""))
        counts = Counter()
        for name, code in codes.items():
            if code is None:
                counts["not run"] += 1
            elif code != 0:
                counts["killed"] += 1
            else:
                counts[classify(diff(sources, name))] += 1
        if codes:
            table[str(meta.relative_to("mutants"))[: -len(".meta")]] = counts
    return table


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print("| file | mutants | killed | survived (message text) | equivalent | not run | score |")
    print("|---|---|---|---|---|---|---|")
    for path, counts in summarise().items():
        equivalent = sum(v for k, v in counts.items() if k.startswith("equivalent"))
        survived = counts["survived"] + counts["survived: message text"]
        run = counts["killed"] + survived
        score = f"{100 * counts['killed'] / run:.1f} %" if run else "–"
        print(f"| {path} | {sum(counts.values())} | {counts['killed']} | {survived} "
              f"({counts['survived: message text']}) | {equivalent} | {counts['not run']} | {score} |")


if __name__ == "__main__":
    main()
