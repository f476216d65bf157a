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

``--json`` is also the resume point: runs it already holds are not run again (a file written
with other settings is refused), so a stopped benchmark, or one run a criterion or ratio at a
time into the same file, adds only what is missing; the table covers every run in the file.
Prints Markdown tables: mean ± standard deviation over seeds of clean, IBP- and
CROWN-IBP-certified accuracy and the unstable-ReLU fraction (IBP bounds) on the test split,
then IBP-certified accuracy per seed.
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
from harp_plugin.reports.writers import write_text_atomic

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
    start, cpu = time.perf_counter(), time.process_time()
    report = run(config, log=lambda line: print(f"  seed {seed} {method} {ratio:.0%}: {line}", flush=True)).to_dict()
    return {"seed": seed, "method": method, "ratio": ratio, "settings": settings(args),
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "phase_seconds": report["seconds"],
            "epochs": report["epochs"], "notes": report["notes"],
            "models": {k: report[k] for k in ("dense", "dense_same_budget", "pruned")}, "out": str(out)}


def settings(args: argparse.Namespace) -> dict:
    """What makes two runs of the same seed, criterion and ratio the same run."""
    return {"rounds": args.rounds, "finetune_epochs": args.finetune_epochs, "rewind_epoch": args.rewind_epoch}


def load_rows(path: str | None, wanted: dict) -> list[dict]:
    """The runs an earlier invocation wrote to ``path``; refused if made with other settings."""
    if path is None or not Path(path).is_file():
        return []
    rows = json.loads(Path(path).read_text())
    other = [r.get("settings") for r in rows if r.get("settings") != wanted]
    if other:
        raise SystemExit(f"{path} holds runs made with other settings ({other[0]}, not {wanted}): use another --json")
    return rows


def table(rows: list[dict], methods: list[str]) -> str:
    """Mean ± standard deviation over seeds per model (parameters, MACs: mean counts; learned-rate
    criteria spend the channel budget unevenly), then IBP-certified accuracy per seed; criteria
    in the order of ``methods`` at each ratio."""
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| model | channels kept | parameters | MACs | epochs | " + " | ".join(m for m, _ in METRICS) + " |",
             "|---|---|---|---|---|" + "---|" * len(METRICS)]
    per_seed = ["| model | channels kept | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                "|---|---|" + "---|" * len(seeds)]

    def add(label: str, kept: str, epochs: int, reports: dict[int, dict]) -> None:
        cells = []
        for _, read in METRICS:
            values = [100 * read(r) for r in reports.values()]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        size = [statistics.mean(r[key] for r in reports.values()) / 1000 for key in ("parameters", "macs")]
        lines.append(f"| {label} | {kept} | {size[0]:.1f} k | {size[1]:.0f} k | {epochs} | " + " | ".join(cells) + " |")
        ibp = dict(METRICS)["IBP cert."]
        cells = [f"{100 * ibp(reports[s]):.1f}" if s in reports else "–" for s in seeds]
        per_seed.append(f"| {label} | {kept} | " + " | ".join(cells) + " |")

    first = {r["seed"]: r for r in reversed(rows)}  # one run per seed: its dense models are every run's
    epochs = next(iter(first.values()))["epochs"]
    add("dense", "100%", epochs["dense"], {s: r["models"]["dense"] for s, r in first.items()})
    add("dense, same budget", "100%", epochs["dense, same budget"],
        {s: r["models"]["dense_same_budget"] for s, r in first.items()})
    for method, ratio in sorted({(r["method"], r["ratio"]) for r in rows}, key=lambda k: (k[1], methods.index(k[0]))):
        group = [r for r in rows if (r["method"], r["ratio"]) == (method, ratio)]
        add(method, f"{1 - ratio:.0%}", group[0]["epochs"]["pruned"], {r["seed"]: r["models"]["pruned"] for r in group})
    return "\n".join(lines) + "\n\nIBP-certified accuracy per seed:\n\n" + "\n".join(per_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["stability", "magnitude", "random", "harp"])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--rounds", type=int, default=2, help="geometric pruning rounds (HARP: 1)")
    parser.add_argument("--finetune-epochs", type=int, default=2, help="retraining epochs after every round")
    parser.add_argument("--rewind-epoch", type=int, default=12, help="pre-training epoch survivors go back to")
    parser.add_argument("--out", default="runs/bench-certified")
    parser.add_argument("--json", help="every run's figures (rewritten after each run); runs it holds are skipped")
    args = parser.parse_args()
    rows = load_rows(args.json, settings(args))
    done = {(r["seed"], r["method"], r["ratio"]) for r in rows}
    # per seed: the run whose dense checkpoints the others resume
    templates = {r["seed"]: Path(r["out"]) for r in reversed(rows)}
    for ratio in args.ratios:  # every seed at one ratio before the next: partial results stay usable
        for seed in args.seeds:
            for method in args.methods:
                if (seed, method, ratio) in done:
                    continue
                row = run_one(args, seed, method, ratio, templates.get(seed))
                templates.setdefault(seed, Path(row["out"]))
                rows.append(row)
                if args.json:
                    write_text_atomic(Path(args.json), json.dumps(rows, indent=2))
    asked = [r for r in rows if r["seed"] in args.seeds and r["method"] in args.methods and r["ratio"] in args.ratios]
    print(table(asked, args.methods))


if __name__ == "__main__":
    main()
