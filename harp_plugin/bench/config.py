"""The settings of one benchmark, and the check that a bench folder holds results of these settings."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harp_plugin.pipeline.config import RunConfig
from harp_plugin.reports import write_text_atomic

UNITS: tuple[str, ...] = ("channels", "parameters", "macs")
TRAININGS: tuple[str, ...] = ("natural", "adversarial")
# Settings that mean what they mean for `harp-prune run`, and are checked the same way.
_SHARED_WITH_RUN = (
    "dataset", "data_dir", "download", "max_train", "max_eval", "model", "model_width", "seed", "device",
    "batch_size", "eps", "train_attack_steps", "val_attack_steps", "eval_attacks", "eval_attack_steps",
    "pretrain_epochs", "pretrain_lr", "finetune_epochs", "finetune_lr", "prune_epochs", "prune_lr",
)
# Settings that do not change any result: a bench folder may be resumed with other values.
_NOT_IDENTITY = frozenset({"criteria", "out_dir", "device", "progress"})


class BenchConfigError(ValueError):
    """A bench folder written with other settings (results must not be mixed)."""


@dataclass(frozen=True)
class BenchConfig:
    """One dataset and model; every criterion pruned to each budget, fine-tuned alike, evaluated.

    ``keep`` lists the budgets as kept fractions of ``unit``: channels (each layer keeps that
    share of its channels), parameters or MACs of the whole model. ``criteria`` empty = every
    registered importance and transform.
    """

    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    max_train: int | None = None
    max_eval: int | None = None
    model: str = "small-cnn"
    model_width: int | None = 16
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    eps: float = 0.1
    criteria: tuple[str, ...] = ()
    unit: str = "macs"
    keep: tuple[float, ...] = (0.5, 0.25)
    pretrain: str = "natural"
    pretrain_epochs: int = 3
    pretrain_lr: float = 0.05
    finetune: str = "natural"
    finetune_epochs: int = 2
    finetune_lr: float = 0.01
    prune_epochs: int = 2
    prune_lr: float = 0.1
    train_attack_steps: int = 5
    val_attack_steps: int = 10
    eval_attacks: tuple[str, ...] = ("pgd", "autoattack")
    eval_attack_steps: int = 20
    certify: tuple[str, ...] = ("ibp", "crown-ibp")
    certify_backend: str = "native"
    latency_repeats: int = 20
    out_dir: str = "runs/bench"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if not self.keep or any(not 0.0 < k < 1.0 for k in self.keep):
            raise ValueError(f"keep must list kept fractions in (0, 1), got {self.keep}")
        for name in ("pretrain", "finetune"):
            if getattr(self, name) not in TRAININGS:
                raise ValueError(f"{name} must be one of {', '.join(TRAININGS)}, got {getattr(self, name)!r}")
        if self.latency_repeats < 1:
            raise ValueError(f"latency_repeats must be a positive integer, got {self.latency_repeats}")
        RunConfig(**{name: getattr(self, name) for name in _SHARED_WITH_RUN})  # the same checks as `run`

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings results depend on, in JSON types (tuples as lists)."""
        return json.loads(json.dumps({k: v for k, v in self.to_dict().items() if k not in _NOT_IDENTITY}))


def claim_bench_dir(config: BenchConfig) -> Path:
    """Create ``out_dir`` for ``config``, or accept it if it holds results of the same settings.

    A folder written with other settings is refused, naming every setting that differs.
    """
    out_dir = Path(config.out_dir)
    record = out_dir / "bench.json"
    if record.is_file():
        try:
            saved = json.loads(record.read_text())["identity"]
        except (ValueError, KeyError) as error:
            raise BenchConfigError(f"{str(record)!r} is not a harp-prune bench record ({error})") from error
        current = config.identity()
        differing = [
            f"{key} = {saved.get(key)!r} there, {current.get(key)!r} now"
            for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)
        ]
        if differing:
            raise BenchConfigError(
                f"bench folder {str(out_dir)!r} holds results of other settings ({'; '.join(differing)}): "
                "use another --out-dir, or the same settings to resume it"
            )
        return out_dir
    write_text_atomic(record, json.dumps({"identity": config.identity()}, indent=2))
    return out_dir
