"""HARP inside PyTorch Lightning's own training loop: a Callback prunes with HarpImportance.

The LightningModule is ordinary adversarial training (PGD-AT) with one extension point,
``hooks`` (harp_plugin's ``TrainingHooks``: a call before every optimiser step and a term
added to the loss). ``HarpPruningCallback`` attaches HARP channel masks in ``setup`` — before
Lightning builds the optimiser, so the optimiser trains the channel scores, the per-layer
rates and BN while the weights stay frozen — and adds γ·L_c through the hooks. When
Lightning's loop ends it projects the learned rates onto the FLOPs budget
(``project_onto_budget``: this loop is not ``HarpImportance.fit``, which would do it), hands the
learned scores to ``HarpImportance`` and removes the channels with ``tp.MetaPruner``; a second
``Trainer.fit`` (a fresh optimiser) fine-tunes the smaller network. 768 mnist5k images and a
few epochs keep it short on a CPU; Lightning puts the model on a GPU when there is one, and every
harp_plugin call follows it there.

    PYTHONPATH=. python integrations/lightning_harp_callback.py
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch_pruning as tp
from torch import nn

from harp_plugin.data import load_dataset, make_loaders
from harp_plugin.importance import HarpImportance
from harp_plugin.importance.phases import batchnorm_parameters
from harp_plugin.masking import attach_masks, conv_linear_flops, project_onto_budget
from harp_plugin.masking.hooks import MaskTrainingHooks
from harp_plugin.models import model_device, small_cnn
from harp_plugin.robust.evaluation import predict
from harp_plugin.robust.hooks import TrainingHooks
from harp_plugin.robust.losses import PGDATLoss, TrainingLoss
from harp_plugin.schedulers import IncrementalGamma


class AdversarialModule(pl.LightningModule):
    """PGD-AT training of ``model``; ``hooks`` lets a callback act on every step and add to the loss."""

    def __init__(self, model: nn.Module, loss: TrainingLoss, lr: float) -> None:
        super().__init__()
        self.model, self.loss, self.lr = model, loss, lr
        self.hooks = TrainingHooks()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        inputs, labels = batch
        self.hooks.on_batch_start(self.model, batch_index, self.trainer.num_training_batches)
        value = self.loss(self.model, inputs, labels)
        extra = self.hooks.regulariser(self.model)
        return value if extra is None else value + extra

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.SGD(trainable, lr=self.lr, momentum=0.9)


class HarpPruningCallback(pl.Callback):
    """Learn HARP channel scores and rates during this fit, then remove channels at its end."""

    def __init__(self, target_kept: float, example_inputs: torch.Tensor, gamma: IncrementalGamma) -> None:
        self.importance = HarpImportance(target_kept, kept_init=0.8, gamma=gamma)
        self.example_inputs, self.gamma = example_inputs, gamma
        self.masks = None
        self.dense_flops = 0.0
        self.frozen: list[nn.Parameter] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = pl_module.model
        self.dense_flops = conv_linear_flops(model, self.example_inputs.to(model_device(model)))  # the plain model
        self.masks = attach_masks(model, self.importance.target_kept, mode="channel", method="harp",
                                  kept_init=self.importance.kept_init, example_inputs=self.example_inputs)
        keep = {id(p) for p in self.masks.score_parameters() + batchnorm_parameters(model)}
        self.frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
        for parameter in self.frozen:
            parameter.requires_grad_(False)
        pl_module.hooks = MaskTrainingHooks(self.masks, self.gamma)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.hooks = TrainingHooks()
        for parameter in self.frozen:
            parameter.requires_grad_(True)
        print(f"HARP masks keep {self.masks.kept_cost_fraction():.3f} of the FLOPs; budget (uniform "
              f"{self.importance.target_kept:.0%} of channels) {self.masks.budget_fraction():.3f}, "
              f"reached: {self.masks.target_reached()}")
        print(f"projected onto the budget: {project_onto_budget(self.masks).kept_cost:.4f}")
        self.importance.adopt(self.masks, self.example_inputs)
        self.importance.make_pruner(pl_module.model, self.example_inputs).step()
        share = conv_linear_flops(pl_module.model, self.example_inputs.to(model_device(pl_module.model))) / self.dense_flops
        print(f"the pruned network keeps {share:.4f} of the Conv/Linear FLOPs")


def accuracy(model: nn.Module, loader) -> float:
    return predict(model, loader, progress=False).accuracy("clean")


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    splits = load_dataset("mnist5k", seed=0, max_train=768)
    train_loader, val, _ = make_loaders(splits, batch_size=64, seed=0)
    model = small_cnn(mean=splits.mean, std=splits.std, width=8)
    example_inputs = next(iter(val))[0][:1]
    loss = PGDATLoss(eps=0.1, steps=2)

    def train(epochs: int, lr: float, callbacks: list[pl.Callback] = ()) -> None:
        model.train()  # evaluation leaves it in eval mode; Lightning keeps whatever mode it finds
        pl.Trainer(max_epochs=epochs, callbacks=list(callbacks), accelerator="auto", devices=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).fit(AdversarialModule(model, loss, lr), train_loader)

    train(2, lr=0.05)
    before = tp.utils.count_ops_and_params(model, example_inputs.to(model_device(model)))
    print(f"dense: val clean accuracy {accuracy(model, val):.3f}")
    train(2, lr=0.1, callbacks=[HarpPruningCallback(0.5, example_inputs, IncrementalGamma(0.2, period=0.25))])
    train(1, lr=0.01)

    macs, params = tp.utils.count_ops_and_params(model, example_inputs.to(model_device(model)))
    print(f"pruned: params {before[1]:,} -> {params:,}, MACs {before[0]:,} -> {macs:,}, "
          f"val clean accuracy {accuracy(model, val):.3f} after 1 fine-tuning epoch")


if __name__ == "__main__":
    main()
