"""Soundness fuzz of the bound engine: random networks, random balls, sampled points.

"Certified" must mean sound: every point of the ε-ball (clipped to [0, 1]) gives outputs
inside the bounds. This script draws random architectures (MLPs, CNNs with
strided, dilated and grouped convolutions, BatchNorm and pooling, residual networks, networks
with functional operations in a custom ``forward``, channel-pruned networks, networks with
HARP/HYDRA or ``torch.nn.utils.prune`` masks), random weights and BatchNorm statistics, random centres and
radii, then checks sampled points against the IBP, CROWN-IBP and CROWN bounds of
``harp_plugin.compute_bounds``, both for the outputs themselves and for the margin
specification f_y − f_j. Points are box corners, uniform samples and PGD-pushed points (a few
projected sign-gradient steps towards the lower or upper bound of a random row).

A violation is a point whose value lies outside [lower − tol, upper + tol] with
``tol = 1e-5·(1 + |bound|)``: float32 rounding of the forward pass, not an unsound bound,
explains differences below that. Architectures the engine refuses (UnsupportedLayerError)
are counted, never skipped silently.

    python benchmarks/fuzz_soundness.py --points 100000 --seed 0 [--json out.json]

Exit status 1 when any violation was found.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from harp_plugin import compute_bounds
from harp_plugin.bounds import Residual, UnsupportedLayerError
from harp_plugin.masking import attach_masks

METHODS = ("ibp", "crown-ibp", "crown")
FAMILIES = ("mlp", "cnn", "residual", "functional", "pruned", "masked")
CENTRES = 4
RELATIVE_TOLERANCE = 1e-5


class FunctionalNet(nn.Module):
    """Layers glued by functional operations in ``forward`` (what an fx-traced engine handles)."""

    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.out(F.relu(self.fc2(h)) + h)


@dataclass
class Tally:
    """What the fuzz checked and found."""

    architectures: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    points: int = 0
    points_by_kind: Counter = field(default_factory=Counter)
    checks: Counter = field(default_factory=Counter)
    violations: Counter = field(default_factory=Counter)
    worst_outside: dict = field(default_factory=dict)  # max of value − upper, lower − value
    examples: list = field(default_factory=list)


def random_architecture(family: str, rng: random.Random) -> tuple[nn.Module, tuple[int, int, int]]:
    """A random network of ``family`` and its input shape (C, H, W); weights randomised after."""
    channels, size, classes = rng.choice([1, 2, 3]), rng.choice([4, 6, 8]), rng.randint(2, 6)
    shape = (channels, size, size)
    if family in ("mlp", "functional") or (family == "masked" and rng.random() < 0.5):
        features = channels * size * size
        if family == "functional":
            return FunctionalNet(features, rng.choice([8, 16, 24]), classes), shape
        layers: list[nn.Module] = [nn.Flatten()]
        width = features
        for _ in range(rng.randint(1, 3)):
            hidden = rng.choice([4, 8, 16, 32])
            layers += [nn.Linear(width, hidden)] + ([nn.BatchNorm1d(hidden)] if rng.random() < 0.4 else []) + [nn.ReLU()]
            width = hidden
        return nn.Sequential(*layers, nn.Linear(width, classes)), shape
    if family == "residual":
        width = rng.choice([2, 4, 6])
        block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
        )
        shortcut = nn.Conv2d(width, width, 1) if rng.random() < 0.5 else None
        model = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            Residual(block, shortcut, nn.ReLU()),
            nn.Flatten(), nn.Linear(width * size * size, classes),
        )
        return model, shape
    layers, width, side = [], channels, size
    for _ in range(rng.randint(1, 3)):
        out = rng.choice([2, 4, 8])
        kernel, stride = rng.choice([(1, 1), (3, 1), (3, 2)])
        dilation = 2 if kernel == 3 and rng.random() < 0.2 else 1
        padding = dilation * (kernel // 2) if rng.random() < 0.7 else 0
        # Torch-Pruning 1.6 can leave grouped convolutions inconsistent: no groups where it prunes
        grouped = family != "pruned" and width % 2 == 0 and out % 2 == 0 and rng.random() < 0.3
        groups = 2 if grouped else 1
        reach = dilation * (kernel - 1) + 1
        if (side + 2 * padding - reach) // stride + 1 < 1:
            break
        layers += [nn.Conv2d(width, out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)]
        layers += [nn.BatchNorm2d(out)] if rng.random() < 0.5 else []
        layers += [nn.ReLU()]
        width, side = out, (side + 2 * padding - reach) // stride + 1
        if side >= 2 and side % 2 == 0 and rng.random() < 0.3:
            layers.append(nn.AvgPool2d(2))
            side //= 2
    if rng.random() < 0.25:
        layers.append(nn.AdaptiveAvgPool2d(1))
        side = 1
    hidden = rng.choice([8, 16])
    layers += [nn.Flatten(), nn.Linear(width * side * side, hidden), nn.ReLU(), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers), shape


def randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Weights at a random scale; BatchNorm with random statistics, scale and shift."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.mul_(0.5 + 1.5 * torch.rand((), generator=generator))
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.3, generator=generator)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0.0, 0.5, generator=generator)
                module.running_var.uniform_(0.3, 2.0, generator=generator)
                module.weight.normal_(1.0, 0.4, generator=generator)
                module.bias.normal_(0.0, 0.3, generator=generator)


def transform(family: str, model: nn.Module, shape: tuple[int, ...], rng: random.Random) -> nn.Module:
    """Prune channels (Torch-Pruning), or mask weights: HARP/HYDRA masks with random scores, or
``torch.nn.utils.prune`` masks."""
    example = torch.rand(1, *shape)
    if family == "pruned":
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        pruner = tp.MetaPruner(model, example, importance=tp.importance.RandomImportance(),
                               pruning_ratio=rng.uniform(0.2, 0.6), ignored_layers=[classifier])
        pruner.step()
    elif family == "masked" and rng.random() < 0.3:  # PyTorch's own pruning masks
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                prune.random_unstructured(module, "weight", amount=rng.uniform(0.2, 0.8))
    elif family == "masked":
        masks = attach_masks(model, rng.uniform(0.2, 0.8), method=rng.choice(["harp", "hydra"]))
        with torch.no_grad():
            for parameter in masks.score_parameters():
                parameter.normal_()
        masks.refresh()  # masks follow the new scores (they are recomputed once per step)
    return model


def sample_points(model: nn.Module, x: torch.Tensor, eps: float, count: int, rows: int,
                  generator: torch.Generator, margin: torch.Tensor) -> dict[str, torch.Tensor]:
    """``count`` points of the clipped ball around each centre: corners, uniform, PGD-pushed."""
    low, high = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    per_kind = max(1, count // 3)
    batch = x.shape[0]

    def expand(tensor: torch.Tensor, n: int) -> torch.Tensor:
        return tensor.repeat_interleave(n, dim=0)

    lo, hi = expand(low, per_kind), expand(high, per_kind)
    corners = torch.where(torch.rand(lo.shape, generator=generator) < 0.5, lo, hi)
    uniform = lo + (hi - lo) * torch.rand(lo.shape, generator=generator)
    pushed = lo + (hi - lo) * torch.rand(lo.shape, generator=generator)
    spec = expand(margin, per_kind)
    use_margin = torch.rand(batch * per_kind, generator=generator) < 0.5
    outputs = margin.shape[2]
    row = torch.randint(0, max(rows, outputs), (batch * per_kind,), generator=generator)
    direction = torch.where(torch.rand(batch * per_kind, generator=generator) < 0.5, -1.0, 1.0)
    step = (hi - lo) / 4
    for _ in range(6):
        pushed.requires_grad_(True)
        with torch.enable_grad():
            logits = model(pushed)
            value = torch.where(
                use_margin,
                torch.einsum("bko,bo->bk", spec, logits).gather(1, row.clamp(max=rows - 1)[:, None]).squeeze(1),
                logits.gather(1, row.clamp(max=outputs - 1)[:, None]).squeeze(1),
            )
            gradient, = torch.autograd.grad((direction * value).sum(), pushed)
        with torch.no_grad():
            pushed = torch.max(torch.min(pushed + step * gradient.sign(), hi), lo)
    return {"corner": corners, "uniform": uniform, "pgd": pushed.detach()}


def check(tally: Tally, family: str, name: str, values: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> None:
    """Count the points outside [lower, upper] by more than the float32 tolerance."""
    outside = torch.maximum(lower - values, values - upper)  # > 0: outside the bounds
    tolerance = RELATIVE_TOLERANCE * (1 + torch.maximum(lower.abs(), upper.abs()))
    bad = int(((outside > tolerance).any(dim=1)).sum())
    tally.checks[name] += values.shape[0]
    if bad:
        tally.violations[name] += bad
        tally.examples.append({"family": family, "check": name, "points": bad, "outside_by": float(outside.max())})
    tally.worst_outside[name] = max(tally.worst_outside.get(name, -math.inf), float(outside.max()))


def fuzz_one(tally: Tally, family: str, rng: random.Random, generator: torch.Generator, points: int) -> None:
    model, shape = random_architecture(family, rng)
    randomise(model, generator)
    model = transform(family, model, shape, rng).eval().requires_grad_(False)
    x = torch.rand(CENTRES, *shape, generator=generator)
    x[0] = (x[0] > 0.5).float()  # a centre on the pixel range's edges exercises the clipping
    eps = rng.choice([0.0, rng.uniform(0.001, 0.03), rng.uniform(0.03, 0.15)])
    with torch.no_grad():
        classes = model(x).shape[1]
    y = torch.randint(0, classes, (CENTRES,), generator=generator)
    try:
        with torch.no_grad():
            bounds = {
                method: (compute_bounds(model, x, eps, method=method), compute_bounds(model, x, eps, method=method, y=y))
                for method in METHODS
            }
    except UnsupportedLayerError:
        tally.refused[family] += 1
        return
    tally.architectures[family] += 1
    margin = bounds["ibp"][1]
    spec = torch.eye(classes)[y].unsqueeze(1) - torch.eye(classes).unsqueeze(0)
    keep = torch.ones(CENTRES, classes, dtype=torch.bool).scatter_(1, y[:, None], False)
    spec = spec[keep].view(CENTRES, classes - 1, classes)
    samples = sample_points(model, x, eps, points // CENTRES, margin.lower.shape[1], generator, spec)
    for kind, batch in samples.items():
        per_centre = batch.shape[0] // CENTRES
        with torch.no_grad():
            logits = model(batch)
        margins = torch.einsum("bko,bo->bk", spec.repeat_interleave(per_centre, dim=0), logits)
        tally.points += batch.shape[0]
        tally.points_by_kind[kind] += batch.shape[0]
        for method, (outputs, margin_bounds) in bounds.items():
            check(tally, family, f"{method} outputs", logits, outputs.lower.repeat_interleave(per_centre, 0),
                  outputs.upper.repeat_interleave(per_centre, 0))
            check(tally, family, f"{method} margins", margins, margin_bounds.lower.repeat_interleave(per_centre, 0),
                  margin_bounds.upper.repeat_interleave(per_centre, 0))


def fuzz(points: int, seed: int = 0, points_per_architecture: int = 3000) -> Tally:
    """Check at least ``points`` sampled points; architectures cycle through every family."""
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tally = Tally()
    index = 0
    while tally.points < points:
        family = FAMILIES[index % len(FAMILIES)]
        fuzz_one(tally, family, rng, generator, min(points_per_architecture, max(points - tally.points, 3 * CENTRES)))
        index += 1
        if index > 10 * len(FAMILIES) and tally.points == 0:
            raise RuntimeError("every architecture was refused: nothing was checked")
    return tally


def summary(tally: Tally, seconds: float, points: int, seed: int) -> dict:
    return {
        "requested_points": points, "seed": seed, "points": tally.points,
        "points_by_kind": dict(tally.points_by_kind),
        "architectures": dict(tally.architectures), "refused_architectures": dict(tally.refused),
        "checks": dict(tally.checks), "violations": dict(tally.violations),
        "total_violations": sum(tally.violations.values()),
        "worst_outside": tally.worst_outside, "violation_examples": tally.examples[:20],
        "seconds": round(seconds, 1), "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000, help="sampled points to check (at least)")
    parser.add_argument("--seed", type=int, default=0, help="seed of architectures, weights, centres and points")
    parser.add_argument("--per-architecture", type=int, default=3000, help="points per random architecture")
    parser.add_argument("--json", help="also write the summary to this file")
    arguments = parser.parse_args(argv)
    start = time.perf_counter()
    tally = fuzz(arguments.points, arguments.seed, arguments.per_architecture)
    result = summary(tally, time.perf_counter() - start, arguments.points, arguments.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.json:
        with open(arguments.json, "w") as stream:
            stream.write(text + "\n")
    return 1 if result["total_violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
