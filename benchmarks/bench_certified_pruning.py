"""Certified pruning at equal budgets: stability (NRS) vs magnitude vs random (vs HARP).

Every run is the main job itself (``harp_plugin.pipeline.run``) with certified training's
defaults (the dense model meets P6): per seed the dense model is pre-trained once; each
criterion and ratio then prunes a copy in geometric rounds, rewinding the survivors to
pre-training epoch ``--rewind-epoch`` after every round and retraining; the "dense, same
budget" model gets the same number of epochs. HARP learns one removal (one round; its
score-training epochs count towards its budget, set equal to the others'). Copies of the
seed's pre-training checkpoints are resumed, so the dense model, its rewind snapshot and the
same-budget model are trained once per seed and shared by every criterion.

    python benchmarks/bench_certified_pruning.py --seeds 0 1 2 --json runs/bench-certified.json

Prints a Markdown table: mean ± standard deviation over seeds of clean, IBP- and
CROWN-IBP-certified accuracy and the unstable-ReLU fraction (IBP bounds) on the test split.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from harp_plugin.pipeline.config import RunConfig
from harp_plugin.pipeline.run import run

SHARED = ("pretrain.pt", "dense.pt", "same-budget.pt")
METRICS = (
    ("clean", lambda r: r["clean_accuracy"]),
    ("IBP cert.", lambda r: r["extras"]["certified accuracy (IBP)"]),
    ("CROWN-IBP cert.", lambda r: r["extras"]["certified accuracy (CROWN-IBP)"]),
    ("unstable ReLUs (IBP)", lambda r: r["extras"]["unstable ReLU fraction (IBP)"]),
)


def run_one(args, seed: int, method: str, ratio: float, template: Path | None) -> dict:
    out = Path(args.out) / f"seed{seed}-{method}-{int(ratio * 100)}"
    if template is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name in (*SHARED, f"rewind-epoch{args.rewind_epoch}.pt"):
            if (template / name).is_file():
                shutil.copy(template / name, out / name)
    harp = method == "harp"
    config = RunConfig(
        train="certified", method=method, pruning_ratio=ratio, seed=seed, out_dir=str(out), resume=True,
        prune_rounds=1 if harp else args.rounds, prune_epochs=args.finetune_epochs * (args.rounds - 1),
        finetune_epochs=args.finetune_epochs, rewind=f"epoch:{args.rewind_epoch}", eval_attacks=(),
        certify=("ibp", "crown-ibp"), progress=False,
    )
    start = time.perf_counter()
    report = run(config, log=lambda line: print(f"  seed {seed} {method} {ratio:.0%}: {line}", flush=True)).to_dict()
    return {"seed": seed, "method": method, "ratio": ratio, "seconds": time.perf_counter() - start,
            "phase_seconds": report["seconds"],
            "epochs": report["epochs"], "notes": report["notes"],
            "models": {k: report[k] for k in ("dense", "dense_same_budget", "pruned")}, "out": str(out)}


def table(rows: list[dict]) -> str:
    lines = ["| model | channels kept | epochs | " + " | ".join(m for m, _ in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]

    def add(label: str, kept: str, epochs: int, reports: list[dict]) -> None:
        cells = []
        for _, read in METRICS:
            values = [100 * read(r) for r in reports]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        lines.append(f"| {label} | {kept} | {epochs} | " + " | ".join(cells) + " |")

    first = [r for r in rows if (r["method"], r["ratio"]) == (rows[0]["method"], rows[0]["ratio"])]  # one per seed
    add("dense", "100%", first[0]["epochs"]["dense"], [r["models"]["dense"] for r in first])
    add("dense, same budget", "100%", first[0]["epochs"]["dense, same budget"],
        [r["models"]["dense_same_budget"] for r in first])
    for method, ratio in dict.fromkeys((r["method"], r["ratio"]) for r in rows):
        group = [r for r in rows if (r["method"], r["ratio"]) == (method, ratio)]
        add(method, f"{1 - ratio:.0%}", group[0]["epochs"]["pruned"], [r["models"]["pruned"] for r in group])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["stability", "magnitude", "random", "harp"])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--rounds", type=int, default=2, help="geometric pruning rounds (HARP: 1)")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="retraining epochs after every round")
    parser.add_argument("--rewind-epoch", type=int, default=12, help="pre-training epoch survivors go back to")
    parser.add_argument("--out", default="runs/bench-certified")
    parser.add_argument("--json", help="write every run's figures here (rewritten after each run)")
    args = parser.parse_args()
    rows: list[dict] = []
    templates: dict[int, Path] = {}  # per seed: the run whose dense checkpoints the others resume
    for ratio in args.ratios:  # every seed at one ratio before the next: partial results stay usable
        for seed in args.seeds:
            for method in args.methods:
                row = run_one(args, seed, method, ratio, templates.get(seed))
                templates.setdefault(seed, Path(row["out"]))
                rows.append(row)
                if args.json:
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
