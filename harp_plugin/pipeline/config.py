"""The main job's settings: one typed object, filled from defaults, a config file, then flags."""
from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin, get_type_hints

import yaml

from harp_plugin.pipeline.settings import (
    NON_NEGATIVE, POSITIVE, POSITIVE_INT, UNIT, Range, check_registered, check_value, setting,
)


MASK_METHODS: tuple[str, ...] = ("harp", "hydra", "lwm")

TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "adversarial": {"model": "small-cnn", "pretrain_epochs": 3, "finetune_epochs": 2},
    "certified": {"model": "certified-cnn", "pretrain_epochs": 20, "finetune_epochs": 4},
}
"""Settings left unset (None) take the default of the training kind (measured in
docs/results-certified.md for certified training)."""


def _by_kind(name: str) -> str:
    return " (default: " + ", ".join(f"{v[name]} for {kind}" for kind, v in TRAINING_DEFAULTS.items()) + ")"


@dataclass(frozen=True)
class RunConfig:
    """Every knob of ``harp-prune run``; each field is also a ``--flag`` of the same name.

    Declare new fields with :func:`~harp_plugin.pipeline.settings.setting` (a one-line help and
    what the value accepts): the flag's help, choices and parse-time checks come from there.
    """

    dataset: str = setting("mnist5k", "dataset to train and test on", registry="datasets")
    data_dir: str | None = setting(None, "folder holding (or receiving) the dataset files; not needed for bundled sets")
    download: bool = setting(False, "download a torchvision dataset into --data-dir when it is missing")
    max_train: int | None = setting(None, "use at most this many training images (quick runs)", valid=POSITIVE_INT)
    max_eval: int | None = setting(None, "use at most this many validation and test images", valid=POSITIVE_INT)
    model: str | None = setting(None, "architecture, sized for the dataset" + _by_kind("model"), registry="models")
    model_width: int | None = setting(16, "channel width of the model's first layer (models that take one)", valid=POSITIVE_INT)
    seed: int = setting(0, "seed of weights, splits, batch order and attack noise", valid=NON_NEGATIVE)
    device: str = setting("auto", "cpu, cuda, cuda:N, or auto (cuda when present)")
    batch_size: int = setting(64, "images per batch in every phase", valid=POSITIVE_INT)
    eps: float = setting(0.1, "L-inf radius in pixel units of [0, 1] inputs (attacks and certification)", valid=UNIT)
    train: str = setting("adversarial", "adversarial (attack-based loss) or certified (bound-based loss) training",
                         choices=("adversarial", "certified"))
    train_loss: str = setting("pgd-at", "training loss for --train adversarial", registry="losses")
    certified_method: str = setting("ibp", "bound method of the certified training loss",
                                    choices=("ibp", "crown-ibp"))
    certified_lr: float = setting(1e-3, "Adam learning rate of certified training", valid=POSITIVE)
    certified_init: str = setting("ibp", "weight initialisation before certified training (ibp: Shi et al. 2021)",
                                  choices=("ibp", "default"))
    certified_warmup: float = setting(0.05, "share of pre-training at eps = 0 before the ramp", valid=UNIT)
    certified_ramp: float = setting(0.5, "share of pre-training over which eps ramps to its target", valid=UNIT)
    certified_regulariser: float = setting(0.5, "weight of the warm-up regularisers while eps ramps (Shi et al. 2021)",
                                           valid=NON_NEGATIVE)
    certified_kappa: float = setting(0.0, "CROWN-IBP's share of the crown-ibp training bound at the full eps",
                                     valid=UNIT)
    certify: tuple[str, ...] = setting((), "comma-separated bound methods for test-set certified accuracy "
                                           "(default: ibp,crown-ibp after certified training, none otherwise)",
                                       registry="certifiers")
    train_attack_steps: int = setting(5, "PGD steps of the training attack", valid=POSITIVE_INT)
    val_attack_steps: int = setting(10, "PGD steps of the validation attack that selects the best epoch", valid=POSITIVE_INT)
    eval_attacks: tuple[str, ...] = setting(("pgd", "fgsm"), "comma-separated attacks for the test report",
                                            registry="attacks")
    eval_attack_steps: int = setting(20, "steps of the iterative test attacks", valid=POSITIVE_INT)
    pretrain_epochs: int | None = setting(None, "epochs of dense pre-training" + _by_kind("pretrain_epochs"),
                                          valid=NON_NEGATIVE)
    pretrain_lr: float = setting(0.05, "SGD learning rate of pre-training", valid=POSITIVE)
    method: str = setting("magnitude", "pruning criterion (importance)", registry="importances")
    mode: str = setting("channel", "channel: remove whole channels; unstructured: mask single weights (harp, hydra, lwm)",
                        choices=("channel", "unstructured"))
    pruning_ratio: float = setting(0.5, "share of channels (or weights) to remove", valid=Range(0.0, 1.0, high_open=True))
    prune_rounds: int = setting(1, "remove channels in this many geometric rounds, retraining between them",
                                valid=POSITIVE_INT)
    rewind: str = setting("none", "after each pruning round the survivors' weights go back to: none, init, or "
                                  "epoch:K (their values after K pre-training epochs)")
    prune_epochs: int = setting(2, "epochs of score training for learned criteria (harp, hydra, lwm)", valid=NON_NEGATIVE)
    prune_lr: float = setting(0.1, "learning rate of score training", valid=POSITIVE)
    gamma0: float = setting(0.01, "HARP's initial weight of the compression loss", valid=POSITIVE)
    # epochs between γ raises: short runs must reach the target early (methods.md §1)
    gamma_period: float = setting(0.02, "epochs between raises of HARP's compression weight", valid=POSITIVE)
    finetune_epochs: int | None = setting(None, "epochs of fine-tuning after pruning (fresh optimiser)"
                                          + _by_kind("finetune_epochs"), valid=NON_NEGATIVE)
    finetune_lr: float = setting(0.01, "SGD learning rate of fine-tuning", valid=POSITIVE)
    latency_batches: tuple[int, ...] = setting((1, 256), "comma-separated batch sizes at which dense and pruned "
                                                          "forward passes are timed after evaluation")
    latency_repeats: int = setting(5, "timed runs per model and batch size (median, after 2 warm-up runs); 0 skips "
                                      "the timing", valid=NON_NEGATIVE)
    out_dir: str = setting("runs/latest", "folder for checkpoints and the report (report.json, report.md)")
    resume: bool = setting(False, "continue each phase from its checkpoint in --out-dir")
    progress: bool = setting(True, "show progress bars")

    def __post_init__(self) -> None:
        check_value(next(f for f in fields(self) if f.name == "train"), self.train)
        for name, value in TRAINING_DEFAULTS[self.train].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for spec in fields(self):
            check_value(spec, getattr(self, spec.name))
        if self.certified_warmup + self.certified_ramp > 1:
            raise ValueError(
                f"the eps schedule must reach its target within pre-training: certified_warmup "
                f"({self.certified_warmup}) + certified_ramp ({self.certified_ramp}) must be <= 1"
            )
        self.rewind_epoch  # parses (and checks) --rewind
        if self.mode == "unstructured" and self.method not in MASK_METHODS:
            raise ValueError(
                f"mode 'unstructured' needs a learned-mask method ({', '.join(MASK_METHODS)}), not "
                f"{self.method!r}; lwm is per-layer magnitude pruning"
            )
        if self.prune_rounds > 1 and (self.mode != "channel" or self.method in MASK_METHODS):
            raise ValueError(
                f"prune_rounds > 1 needs channel mode and a criterion without learned masks, not "
                f"method {self.method!r} in mode {self.mode!r} (HARP/HYDRA/LWM learn one removal)"
            )
        if any(batch < 1 for batch in self.latency_batches):
            raise ValueError(f"latency_batches must be positive batch sizes, got {self.latency_batches}")

    @property
    def rewind_epoch(self) -> int | None:
        """The pre-training epoch whose weights survivors are rewound to (0 = the
        initialisation), or None for no rewinding."""
        text = self.rewind.strip().lower()
        if text == "none":
            return None
        if text == "init":
            return 0
        head, _, tail = text.partition(":")
        if head != "epoch" or not tail.strip().isdigit():
            raise ValueError(f"rewind must be 'none', 'init' or 'epoch:K' (K a whole number), got {self.rewind!r}")
        epoch = int(tail)
        if epoch > self.pretrain_epochs:
            raise ValueError(
                f"rewind epoch {epoch} is never saved: pre-training has {self.pretrain_epochs} epochs, "
                f"so K must be in 0..{self.pretrain_epochs} (epoch:0 = init)"
            )
        return epoch

    @property
    def rewinds_before_full_eps(self) -> bool:
        """Whether certified retraining after a rewind must ramp ε again: the rewind point
        comes before pre-training reached the full ε."""
        epoch = self.rewind_epoch
        ramp_end = (self.certified_warmup + self.certified_ramp) * self.pretrain_epochs
        return self.train == "certified" and epoch is not None and epoch < ramp_end

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


class ConfigFileError(ValueError):
    """A config file that cannot be read, parsed, or holds something other than settings."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) mapping of RunConfig fields.

    Keys may use ``-`` or ``_`` (``pruning-ratio`` = ``pruning_ratio``); a syntax error names
    the file, line and column; an unknown key names the closest valid one.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"config file {str(source)!r} does not exist")
    suffix = source.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigFileError(f"config file {str(source)!r}: use a .yaml, .yml or .toml file, not {suffix!r}")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigFileError(f"config file {str(source)!r} is not UTF-8 text ({error.reason})") from error
    data = _parse_yaml(source, text) if suffix in (".yaml", ".yml") else _parse_toml(source, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {str(source)!r} must hold a mapping of settings, got {type(data).__name__}")
    values = {str(key).replace("-", "_"): value for key, value in data.items()}
    check_known(values, where=f" in {str(source)!r}")
    return values


def _parse_yaml(source: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigFileError(
            f"{source}{_at(getattr(error, 'problem_mark', None))}: malformed YAML: {problem}{_context(error)}"
        ) from error


def _at(mark: Any) -> str:
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _context(error: Any) -> str:
    """YAML's "while parsing a flow sequence" and where that started, when it says."""
    context, mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    return f" ({context}{_at(mark).replace(',', ' at', 1)})" if context else ""


def _parse_toml(source: Path, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if position:
            message = message[: position.start()]
            raise ConfigFileError(
                f"{source}, line {position[1]}, column {position[2]}: malformed TOML: {message}"
            ) from error
        raise ConfigFileError(f"{source}: malformed TOML: {message}") from error


def check_known(values: Mapping[str, Any], where: str = "") -> None:
    """Reject keys that are not settings, suggesting the closest valid name for each."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if not unknown:
        return
    hints, suggested = [], True
    for key in unknown:
        close = closest_setting(str(key))
        hints.append(f"{key!r} (did you mean {close!r}?)" if close else repr(key))
        suggested = suggested and close is not None
    listing = "" if suggested else f"; valid settings: {', '.join(FIELD_NAMES)}"
    raise ConfigFileError(f"unknown setting {', '.join(hints)}{where}{listing}")


def closest_setting(key: str) -> str | None:
    """The valid setting a misspelt ``key`` most likely meant (``epoch`` → ``pretrain_epochs``)."""
    close = difflib.get_close_matches(key, FIELD_NAMES, n=1, cutoff=0.5)
    contained = [name for name in FIELD_NAMES if key and (key in name or name in key)]
    return (close or contained or [None])[0]


def build_config(file_values: Mapping[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the file's values, then explicit overrides (``None`` = not given).

    Every registry-backed name (dataset, model, method, losses, attacks, certifiers) is checked
    here, so a misspelt name fails before any data is loaded.
    """
    values = dict(file_values or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    check_known(values)
    config = RunConfig(**{name: _coerce(name, value) for name, value in values.items()})
    for spec in fields(config):
        check_registered(spec, getattr(config, spec.name))
    return config


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
            element = get_args(kind)[0]
            return tuple(element(str(item).strip()) for item in items if str(item).strip())
        if kind is bool:
            return _to_bool(value)
        if kind in (int, float) and isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("not a whole number")
        return kind(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"setting {name!r}: cannot use {value!r} as {getattr(kind, '__name__', kind)} ({error})") from error


def parse_setting(name: str, value: Any) -> Any:
    """One setting from text (a flag) or a file value: converted, range- and name-checked."""
    spec = next(f for f in fields(RunConfig) if f.name == name)
    converted = _coerce(name, value)
    check_value(spec, converted)
    check_registered(spec, converted)
    return converted


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
