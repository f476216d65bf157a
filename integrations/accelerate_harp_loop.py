"""HARP inside a Hugging Face Accelerate training loop: the loop is the user's, harp_plugin adds
the masks, one line in the step (γ·L_c) and the channel removal.

Accelerate owns the device placement and the backward pass (``accelerator.prepare`` and
``accelerator.backward``). The three phases are ordinary loops over the prepared loader:
adversarial pre-training (PGD-AT), HARP score/rate learning with the weights frozen, and
adversarial fine-tuning of the physically pruned model. The loop is not ``HarpImportance.fit``,
so it calls ``project_onto_budget`` itself after rate learning: the learned rates are shifted
onto the FLOPs budget (γ alone leaves them wherever it froze). After ``pruner.step()`` the parameters
are new objects, so the fine-tuning optimiser is built and prepared again. 768 mnist5k images
keep it short on a CPU; on a GPU machine Accelerate puts the model there and every
harp_plugin call follows it.

    PYTHONPATH=. python integrations/accelerate_harp_loop.py
"""
from __future__ import annotations

import torch
import torch_pruning as tp
from accelerate import Accelerator
from torch import nn

from harp_plugin.data import load_dataset, make_loaders
from harp_plugin.importance import HarpImportance
from harp_plugin.importance.phases import batchnorm_parameters
from harp_plugin.masking import attach_masks, conv_linear_flops, project_onto_budget
from harp_plugin.masking.hooks import MaskTrainingHooks
from harp_plugin.models import model_device, small_cnn
from harp_plugin.robust.evaluation import predict
from harp_plugin.robust.hooks import TrainingHooks
from harp_plugin.robust.losses import PGDATLoss
from harp_plugin.schedulers import IncrementalGamma


def train(accelerator: Accelerator, model: nn.Module, loader, epochs: int, lr: float,
          hooks: TrainingHooks | None = None) -> None:
    """The user's loop: SGD on PGD-AT over the trainable parameters, plus the hooks' terms."""
    hooks = hooks or TrainingHooks()
    loss = PGDATLoss(eps=0.1, steps=2)
    optimiser = accelerator.prepare(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9))
    model.train()
    for _ in range(epochs):
        for index, (inputs, labels) in enumerate(loader):
            hooks.on_batch_start(model, index, len(loader))
            value = loss(model, inputs, labels)
            extra = hooks.regulariser(model)
            optimiser.zero_grad()
            accelerator.backward(value if extra is None else value + extra)
            optimiser.step()


def accuracy(model: nn.Module, loader) -> float:
    return predict(model, loader, progress=False).accuracy("clean")


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    accelerator = Accelerator()
    splits = load_dataset("mnist5k", seed=0, max_train=768)
    train_loader, val, _ = make_loaders(splits, batch_size=64, seed=0)
    model, train_loader = accelerator.prepare(small_cnn(mean=splits.mean, std=splits.std, width=8), train_loader)
    model = accelerator.unwrap_model(model)   # masks and pruning act on the module itself
    example_inputs = next(iter(val))[0][:1].to(model_device(model))

    train(accelerator, model, train_loader, epochs=2, lr=0.05)
    before = tp.utils.count_ops_and_params(model, example_inputs)
    dense_flops = conv_linear_flops(model, example_inputs)   # before the masks: counted on the plain model
    print(f"dense: val clean accuracy {accuracy(model, val):.3f}")

    gamma = IncrementalGamma(0.2, period=0.25)
    importance = HarpImportance(0.5, kept_init=0.8, gamma=gamma)
    masks = attach_masks(model, importance.target_kept, mode="channel", method="harp",
                         kept_init=importance.kept_init, example_inputs=example_inputs)
    learned = {id(p) for p in masks.score_parameters() + batchnorm_parameters(model)}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in learned]
    for parameter in frozen:
        parameter.requires_grad_(False)
    train(accelerator, model, train_loader, epochs=2, lr=0.1, hooks=MaskTrainingHooks(masks, gamma))
    for parameter in frozen:
        parameter.requires_grad_(True)
    print(f"HARP masks keep {masks.kept_cost_fraction():.3f} of the FLOPs (budget {masks.budget_fraction():.3f})")
    print(f"projected onto the budget: {project_onto_budget(masks).kept_cost:.4f}")
    importance.adopt(masks, example_inputs)
    importance.make_pruner(model, example_inputs).step()
    print(f"the pruned network keeps {conv_linear_flops(model, example_inputs) / dense_flops:.4f} of the Conv/Linear FLOPs")

    train(accelerator, model, train_loader, epochs=1, lr=0.01)   # fresh optimiser on the new parameters
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    print(f"pruned: params {before[1]:,} -> {params:,}, MACs {before[0]:,} -> {macs:,}, "
          f"val clean accuracy {accuracy(model, val):.3f} after 1 fine-tuning epoch")
    if params >= before[1]:
        raise SystemExit("HARP removed no parameters")


if __name__ == "__main__":
    main()
