"""The main job: adversarial pre-training → channel pruning → adversarial fine-tuning → report."""
from __future__ import annotations

import copy
import inspect
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.data import DataSplits, make_loaders
from harp_plugin.data.run_data import RunData, load_run_data, load_splits
from harp_plugin.distributed import is_main, shard_training_loader
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.certify.rewind import WeightRewinder
from harp_plugin.bounds.engine import compute_bounds
from harp_plugin.robust.certified import CertifiedLoss, EpsilonRampHooks
from harp_plugin.deploy.latency import LatencyComparison, compare_latency
from harp_plugin.deploy.pruned import load_pruned, save_pruned
from harp_plugin.robust.certified_warmup import ibp_initialise
from harp_plugin.importance.channels import remove_channels
from harp_plugin.importance.harp import HarpImportance
from harp_plugin.importance.phases import train_masks
from harp_plugin.masking import MaskSet, attach_masks, remove_masks
from harp_plugin.schedulers.gamma import IncrementalGamma
from harp_plugin.models.modes import eval_mode
from harp_plugin.models.validation import check_classifier_output
from harp_plugin.pipeline.budget import LABELS, epoch_budget
from harp_plugin.pipeline.config import RunConfig, resolve_device
from harp_plugin.pipeline.rewinding import (
    EpochSnapshot, check_capturable, load_snapshot, save_initial, snapshot_path,
)
from harp_plugin.registry import get_registry
from harp_plugin.reports.writers import check_writable
from harp_plugin.robust.attacks import Attack, pgd
from harp_plugin.robust.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from harp_plugin.robust.evaluation import EvaluationReport, evaluate
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult, fit


@dataclass
class RunReport:
    """Dense, dense trained as long as the pruned model, and pruned, on the test split, with
    each model's training epochs and the settings and timings that produced them."""

    config: dict[str, Any]
    device: str
    dense: EvaluationReport
    dense_same_budget: EvaluationReport
    pruned: EvaluationReport
    epochs: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    latency: list[LatencyComparison] = field(default_factory=list)

    def columns(self) -> dict[str, EvaluationReport]:
        """The compared models by label, in table order (see ``pipeline.budget.LABELS``)."""
        return dict(zip(LABELS, (self.dense, self.dense_same_budget, self.pruned)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "device": self.device,
            "dense": self.dense.to_dict(),
            "dense_same_budget": self.dense_same_budget.to_dict(),
            "pruned": self.pruned.to_dict(),
            "epochs": self.epochs,
            "seconds": self.seconds,
            "notes": self.notes,
            "latency": [row.to_dict() for row in self.latency],
        }


@dataclass
class _Session:
    """What every phase of one run shares: data, loss, attacks, device, output folder."""

    config: RunConfig
    device: str
    data: RunData
    loss: TrainingLoss
    val_attack: Attack | None  # None in certified runs: they select on IBP-certified accuracy
    log: Callable[[str], None] = print
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[phase] = time.perf_counter() - start

    def train(
        self, model: nn.Module, epochs: int, lr: float, checkpoint: str, description: str, ramp: bool = False,
        snapshot_epoch: int | None = None,
    ) -> TrainResult:
        """One training phase, checkpointed (and resumable) under ``out_dir``.

        Adversarial: SGD on ``self.loss``. Certified (methods.md §4): Adam, gradient-norm clip
        8, and — with ``ramp`` — ε held at 0 for the ``certified_warmup`` share of the epochs,
        then ramped to ε_max over the ``certified_ramp`` share; only full-ε epochs may be
        selected as the best, on IBP-certified validation accuracy (no validation attack).
        A collapse to a constant classifier is logged and noted. With
        ``snapshot_epoch`` K > 0 the state after epoch K is saved for ``--rewind epoch:K``.
        """
        loss, ramp_hooks, config = self.loss, None, TrainConfig(epochs=epochs, lr=lr)
        if self.config.train == "certified":
            loss = certified_loss(self.config, epochs if ramp else 0)
            ramp_hooks = EpsilonRampHooks(loss, self.data.val_loader)
            config = TrainConfig(epochs=epochs, lr=self.config.certified_lr, optimizer="adam",
                                 weight_decay=0.0, grad_clip=8.0)
        hooks = ramp_hooks
        if snapshot_epoch:
            hooks = EpochSnapshot(snapshot_epoch, snapshot_path(Path(self.config.out_dir), snapshot_epoch), ramp_hooks)
        result = fit(
            model, loss, self.data.train_loader, self.data.val_loader, config, val_attack=self.val_attack,
            hooks=hooks, checkpoint_path=Path(self.config.out_dir) / checkpoint, resume=self.config.resume,
            device=self.device, progress=self.config.progress, description=description,
        )
        collapse = ramp_hooks.collapse_message(description) if ramp_hooks is not None else None
        if collapse is not None:
            self.log(f"WARNING: {collapse}")
            self.notes.append(collapse)
        return result

    def evaluate(self, model: nn.Module, attacks: list[Attack], label: str) -> EvaluationReport:
        """Test-split report; certified accuracies (and IBP's unstable-ReLU share) go to extras."""
        report = evaluate(
            model, self.data.test_loader, attacks, self.data.splits.num_classes, self.device, self.config.progress, label
        )
        for method in self.config.certify_methods:
            result = certified_accuracy(
                model, self.data.test_loader, self.config.eps, method=method, device=self.device,
                progress=self.config.progress,
            )
            report.extras[f"certified accuracy ({method.upper()})"] = result.certified_accuracy
            report.extras[f"unstable ReLU fraction ({method.upper()})"] = result.unstable_fraction
        return report


def run(config: RunConfig, log: Callable[[str], None] = print) -> RunReport:
    """Run every phase of ``config``; checkpoints and the report go to ``config.out_dir``."""
    out_dir = check_writable(Path(config.out_dir))
    torch.manual_seed(config.seed)
    budget = epoch_budget(config)
    log(f"[1/6] data: {config.dataset}")
    start = time.perf_counter()
    session = _open_session(config, log)
    eval_attacks = [
        build_attack(name, config.eps, config.eval_attack_steps, session.data.splits.num_classes)
        for name in config.eval_attacks
    ]
    get_registry().get("importances", config.method)  # a bad name fails before any training
    session.seconds["data"] = time.perf_counter() - start

    log(f"[2/6] {config.train} pre-training ({config.pretrain_epochs} epochs, {session.loss.name}, eps={config.eps})")
    model = build_model(config, session.data.splits).to(session.device)
    check_classifier_output(model, session.data.example, session.data.splits.num_classes)
    if config.train == "certified":
        prepare_certified(model, session.data.example, config)
    rewind_epoch = config.rewind_epoch
    if config.resume:
        check_capturable(out_dir, rewind_epoch, out_dir / "pretrain.pt")
    if rewind_epoch == 0 and not (config.resume and snapshot_path(out_dir, 0).is_file()):
        save_initial(model, out_dir)
    with session.timed("pretrain"):
        session.train(model, config.pretrain_epochs, config.pretrain_lr, "pretrain.pt", "pre-train", ramp=True,
                      snapshot_epoch=rewind_epoch)
        save_checkpoint({"model": model.state_dict()}, out_dir / "dense.pt")
    rewind_state = None if rewind_epoch is None else load_snapshot(out_dir, rewind_epoch, session.device)

    unit = "channels" if config.mode == "channel" else "weights"
    rounds = f" in {config.prune_rounds} geometric rounds" if config.prune_rounds > 1 else ""
    rewinding = "" if rewind_epoch is None else f", survivors rewound to {config.rewind} after each round"
    log(f"[3/6] pruning {config.pruning_ratio:.0%} of {unit}{rounds} with {config.method!r} importance{rewinding}")
    pruned = copy.deepcopy(model)
    importance = build_importance(config, pruned, session.data.train_loader)
    with session.timed("prune"):
        prune_history, masks = _prune(session, pruned, importance, rewind_state)
        check_classifier_output(pruned, session.data.example, session.data.splits.num_classes)

    log(f"[4/6] {config.train} fine-tuning ({config.finetune_epochs} epochs, fresh optimiser)")
    with session.timed("finetune"):
        session.train(pruned, config.finetune_epochs, config.finetune_lr, "finetune.pt", "fine-tune",
                      ramp=config.rewinds_before_full_eps)
        fitted = isinstance(importance, HarpImportance) and importance.fitted  # channel mode; masks carry their own
        learned = importance.learned_kept_fractions() if fitted else None
        save_pruned(pruned, out_dir / "pruned.pt", masks=masks, learned_ratios=learned, metadata={
            "model": config.model, "dataset": config.dataset, "input_shape": list(session.data.example.shape[1:]),
        })
        if masks is not None:
            remove_masks(masks, how="zero")  # θ ⊙ M as plain weights for evaluation

    log(f"[5/6] dense, same budget: {budget.extra} more epochs of {config.train} training on the dense model "
        f"({budget.pruned} in all, as many as the pruned model)")
    same_budget = copy.deepcopy(model)
    with session.timed("same_budget"):
        session.train(same_budget, budget.extra, config.finetune_lr, "same-budget.pt", "dense, same budget")
        save_checkpoint({"model": same_budget.state_dict()}, out_dir / "dense-same-budget.pt")

    log(f"[6/6] evaluating the three models on {len(session.data.test_loader.dataset)} test images")
    with session.timed("evaluate"):
        reports = [session.evaluate(m, eval_attacks, label) for m, label in zip((model, same_budget, pruned), LABELS)]
    latency = []
    if config.latency_repeats and is_main():  # one process times, or ranks would slow each other
        with session.timed("latency"):
            latency = compare_latency(model, pruned, session.data.example, config.latency_batches,
                                      repeats=config.latency_repeats, warmup=2)
    notes = session.notes + ([] if prune_history is None else [
        f"{config.method} scores trained for {len(prune_history.history)} epochs; "
        f"selected epoch {prune_history.best_epoch} on validation"
    ])
    notes.append(
        f"dense, same budget: the dense model trained {budget.extra} more epochs (one phase at the fine-tune "
        f"learning rate), {budget.pruned} in all like the pruned model; compare the pruned model with it"
    )
    return RunReport(config.to_dict(), session.device, *reports, budget.by_label(), session.seconds, notes, latency)


def load_run_model(
    config: RunConfig, run_dir: Path, which: str, device: str | torch.device
) -> tuple[nn.Module, DataLoader]:
    """A run's ``dense`` or ``pruned`` model on ``device`` (the pruned one rebuilt from its
    structure record, masks folded) and its test loader."""
    if which not in ("dense", "pruned"):
        raise ValueError(f"which must be 'dense' or 'pruned', got {which!r}")
    splits = load_splits(config)
    model = build_model(config, splits).to(device)
    checkpoint = Path(run_dir) / f"{which}.pt"
    if which == "pruned":
        load_pruned(model, checkpoint, fold_masks=True)
    else:
        load_model_state(model, load_checkpoint(checkpoint, map_location=device).get("model"), repr(str(checkpoint)))
    return model, make_loaders(splits, config.batch_size, seed=config.seed)[2]


def _open_session(config: RunConfig, log: Callable[[str], None]) -> _Session:
    device = resolve_device(config.device)
    data = load_run_data(config, device)
    return _Session(
        config=config,
        device=device,
        data=replace(data, train_loader=shard_training_loader(data.train_loader, config.seed)),
        loss=(
            certified_loss(config, 0) if config.train == "certified"
            else build_loss(config.train_loss, eps=config.eps, steps=config.train_attack_steps)
        ),
        val_attack=None if config.train == "certified" else pgd(config.eps, steps=config.val_attack_steps),
        log=log,
    )


def _prune(
    session: _Session, model: nn.Module, importance: Any, rewind_state: dict[str, torch.Tensor] | None
) -> tuple[TrainResult | None, MaskSet | None]:
    """Channels removed through tp.MetaPruner, or fine-grained masks attached and trained.

    With ``rewind_state`` the surviving weights go back to it after every round (under the
    masks in fine-grained mode); retraining ramps ε again when that state predates the full ε.
    Certified runs have no validation attack: given the CertifiedLoss, ``train_masks`` picks
    the score-training epoch on IBP-certified validation accuracy, like every certified phase.
    """
    config = session.config
    prune_config = TrainConfig(epochs=config.prune_epochs, lr=config.prune_lr)
    common = dict(val_attack=session.val_attack, progress=config.progress)
    if config.mode == "channel":
        history = remove_channels(
            model, importance, config.pruning_ratio, session.data.example, loss=session.loss,
            train_loader=session.data.train_loader, val_loader=session.data.val_loader, prune=prune_config,
            rounds=config.prune_rounds, between_rounds=lambda k: session.train(
                model, config.finetune_epochs, config.finetune_lr, f"finetune-round{k + 1}.pt",
                f"fine-tune round {k + 1}/{config.prune_rounds}", ramp=config.rewinds_before_full_eps,
            ),
            rewinder=None if rewind_state is None else WeightRewinder(model, rewind_state),
            **common,
        )
        return history, None
    masks = attach_masks(model, importance.target_kept, method=importance.method)
    history = train_masks(
        model, masks, session.loss, session.data.train_loader, session.data.val_loader, prune_config,
        gamma=importance.gamma, **common,
    )
    if rewind_state is not None:
        WeightRewinder(model, rewind_state).rewind()
    return history, masks


def build_model(config: RunConfig, splits: DataSplits) -> nn.Module:
    """The registered model, sized for the dataset, with the dataset's normalisation inside."""
    options: dict[str, Any] = dict(
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        input_size=splits.input_size,
        mean=splits.mean,
        std=splits.std,
    )
    if config.model_width is not None:
        options["width"] = config.model_width
    return call_with_supported(get_registry().get("models", config.model), options)


def build_importance(config: RunConfig, model: nn.Module, calibration: DataLoader) -> Any:
    """A registered importance with whichever settings it takes: learned ones (HARP, HYDRA,
    LWM) their target and γ schedule, bound-based ones (stability) the model to score, its
    calibration data (training split, never test) and ε."""
    return call_with_supported(
        get_registry().get("importances", config.method),
        {
            "target_kept": 1.0 - config.pruning_ratio,
            "gamma": IncrementalGamma(config.gamma0, config.gamma_period),
            "model": model,
            "calibration": calibration,
            "eps": config.eps,
        },
    )


def certified_loss(config: RunConfig, ramp_over_epochs: int) -> CertifiedLoss:
    """The certified loss of ``config``: ε is 0 for the ``certified_warmup`` share of
    ``ramp_over_epochs``, then ramps over the ``certified_ramp`` share (0 epochs: full ε at once)."""
    return CertifiedLoss(
        config.eps, method=config.certified_method,
        warmup_epochs=config.certified_warmup * ramp_over_epochs, ramp_epochs=config.certified_ramp * ramp_over_epochs,
        warmup_weight=config.certified_regulariser, kappa=config.certified_kappa,
    )


def prepare_certified(model: nn.Module, example: torch.Tensor, config: RunConfig) -> None:
    """Before any certified training: fail now if the engine cannot bound ``model`` (its
    error names the layer), then apply the IBP initialisation unless ``certified_init`` is 'default'."""
    with eval_mode(model), torch.no_grad():
        compute_bounds(model, example, config.eps, method=config.certified_method)
    if config.certified_init == "ibp":
        ibp_initialise(model)


def build_loss(name: str, **options: Any) -> TrainingLoss:
    """A registered training loss; options it does not take (e.g. eps for 'standard') are dropped."""
    return call_with_supported(get_registry().get("losses", name), options)


def build_attack(name: str, eps: float, steps: int, num_classes: int) -> Attack:
    """A registered evaluation attack with whichever of steps/num_classes it accepts."""
    return call_with_supported(
        get_registry().get("attacks", name), {"eps": eps, "steps": steps, "num_classes": num_classes}
    )


def call_with_supported(factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    """Call ``factory`` with the subset of ``options`` its signature names."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return factory(**options)
    return factory(**{k: v for k, v in options.items() if k in parameters})
