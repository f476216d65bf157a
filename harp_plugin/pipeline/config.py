"""The main job's settings: one typed object, filled from defaults, a config file, then flags."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin, get_type_hints

import yaml


MASK_METHODS: tuple[str, ...] = ("harp", "hydra", "lwm")


@dataclass(frozen=True)
class RunConfig:
    """Every knob of ``harp-prune run``; each field is also a ``--flag`` of the same name."""

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
    train: str = "adversarial"
    train_loss: str = "pgd-at"
    certified_method: str = "crown-ibp"
    certified_lr: float = 1e-3
    certify: tuple[str, ...] = ()
    train_attack_steps: int = 5
    val_attack_steps: int = 10
    eval_attacks: tuple[str, ...] = ("pgd", "fgsm")
    eval_attack_steps: int = 20
    pretrain_epochs: int = 3
    pretrain_lr: float = 0.05
    method: str = "magnitude"
    mode: str = "channel"
    pruning_ratio: float = 0.5
    prune_rounds: int = 1
    prune_epochs: int = 2
    prune_lr: float = 0.1
    gamma0: float = 0.01
    gamma_period: float = 0.02  # epochs between γ raises: short runs must reach the target early (§1)
    finetune_epochs: int = 2
    finetune_lr: float = 0.01
    out_dir: str = "runs/latest"
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1] (pixel units of [0, 1] inputs), got {self.eps}")
        if not 0.0 <= self.pruning_ratio < 1.0:
            raise ValueError(f"pruning_ratio must be in [0, 1), got {self.pruning_ratio}")
        if self.mode not in ("channel", "unstructured"):
            raise ValueError(f"mode must be 'channel' or 'unstructured', got {self.mode!r}")
        if self.mode == "unstructured" and self.method not in MASK_METHODS:
            raise ValueError(
                f"mode 'unstructured' needs a learned-mask method ({', '.join(MASK_METHODS)}), not "
                f"{self.method!r}; lwm is per-layer magnitude pruning"
            )
        if self.prune_rounds < 1:
            raise ValueError(f"prune_rounds must be >= 1, got {self.prune_rounds}")
        if self.prune_rounds > 1 and (self.mode != "channel" or self.method in MASK_METHODS):
            raise ValueError(
                f"prune_rounds > 1 needs channel mode and a criterion without learned masks, not "
                f"method {self.method!r} in mode {self.mode!r} (HARP/HYDRA/LWM learn one removal)"
            )
        if self.train not in ("adversarial", "certified"):
            raise ValueError(f"train must be 'adversarial' or 'certified', got {self.train!r}")
        for name in ("batch_size", "train_attack_steps", "val_attack_steps", "eval_attack_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("pretrain_epochs", "prune_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_train", "max_eval", "model_width"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer or unset, got {getattr(self, name)}")

    @property
    def certify_methods(self) -> tuple[str, ...]:
        """Bound methods for test-set certified accuracy: IBP and CROWN-IBP after certified training
        (full CROWN is tighter but far slower on conv layers: ask for it with --certify)."""
        return self.certify or (("ibp", "crown-ibp") if self.train == "certified" else ())

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RunConfig))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) mapping of RunConfig fields."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"config file {str(source)!r} does not exist")
    suffix = source.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = yaml.safe_load(source.read_text()) or {}
    elif suffix == ".toml":
        data = tomllib.loads(source.read_text())
    else:
        raise ValueError(f"config file {str(source)!r}: use a .yaml, .yml or .toml file, not {suffix!r}")
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(source)!r} must hold a mapping of settings, got {type(data).__name__}")
    return data


def build_config(file_values: Mapping[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the file's values, then explicit overrides (``None`` = not given)."""
    values = dict(file_values or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid settings: {', '.join(FIELD_NAMES)}")
    return RunConfig(**{name: _coerce(name, value) for name, value in values.items()})


def _coerce(name: str, value: Any) -> Any:
    """Convert a file or flag value to the field's type, naming the setting when it can't."""
    hint = get_type_hints(RunConfig)[name]
    if value is None and type(None) in get_args(hint):
        return None
    optional_of = [a for a in get_args(hint) if a is not type(None)] if get_origin(hint) is not tuple else []
    kind = optional_of[0] if optional_of else hint
    try:
        if get_origin(kind) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind is bool:
            return _to_bool(value)
        if kind in (int, float) and isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        return kind(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"setting {name!r}: cannot use {value!r} as {getattr(kind, '__name__', kind)} ({error})") from error


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def resolve_device(requested: str) -> str:
    """``auto`` picks cuda when present; a CUDA device this machine lacks is an error."""
    import torch

    from harp_plugin.models.device import parse_device

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = parse_device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(
            f"device {requested!r} requested but this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
        )
    return requested
