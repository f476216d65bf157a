"""Robust training core: attacks, adversarial losses, the training loop, evaluation."""
from harp_plugin.robust.attacks import Attack, apgd, autoattack, autoattack_light, fgsm, pgd, trades_pgd
from harp_plugin.robust.certified import CertifiedLoss, StabilityRegulariser
from harp_plugin.robust.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from harp_plugin.robust.evaluation import EvaluationReport, evaluate, predict
from harp_plugin.robust.hooks import EpochRecord, TrainingHooks
from harp_plugin.robust.losses import MARTLoss, PGDATLoss, StandardLoss, TRADESLoss, TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult, fit

__all__ = [
    "Attack",
    "CertifiedLoss",
    "CheckpointError",
    "EpochRecord",
    "EvaluationReport",
    "MARTLoss",
    "PGDATLoss",
    "StabilityRegulariser",
    "StandardLoss",
    "TRADESLoss",
    "TrainConfig",
    "TrainResult",
    "TrainingHooks",
    "TrainingLoss",
    "apgd",
    "autoattack",
    "autoattack_light",
    "evaluate",
    "fgsm",
    "fit",
    "load_checkpoint",
    "pgd",
    "predict",
    "save_checkpoint",
    "trades_pgd",
]
