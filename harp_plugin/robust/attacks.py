"""Attacks by name over torchattacks, with every known trap handled here, once.

torchattacks 3.5.1 traps (methods.md §7) and where they are handled:
- attacks need gradients, even inside ``torch.no_grad()`` evaluation → ``torch.enable_grad()``;
- its mode switching can leave an eval-mode model in train mode → ``model.training`` is
  saved and restored around every call;
- APGD/APGD-T/FAB/Square reseed the global RNG → those run inside ``torch.random.fork_rng``;
- a DDP/DataParallel wrapper must not be attacked → the wrapped ``.module`` is;
- attack objects capture parameters at construction, which pruning replaces → the
  torchattacks object is built per call, on the model as it is now.
Models carry their own normalisation layer, so inputs stay in [0, 1] pixel units and
``set_normalization_used`` is never needed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torchattacks
from torch import nn

AttackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AttackBuilder = Callable[[nn.Module], AttackFn]


@dataclass(frozen=True)
class Attack:
    """A named, reusable attack: ``attack(model, x, y)`` returns adversarial inputs."""

    name: str
    eps: float
    build: AttackBuilder = field(repr=False)
    reseeds_global_rng: bool = False

    def __call__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = unwrap_parallel(model)
        was_training = target.training
        rng_guard = (
            torch.random.fork_rng(devices=_cuda_devices(inputs))
            if self.reseeds_global_rng
            else contextlib.nullcontext()
        )
        try:
            with rng_guard, torch.enable_grad():
                adversarial = self.build(target)(inputs, labels)
        finally:
            target.train(was_training)
        return adversarial.detach()


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The module inside a DDP/DataParallel wrapper (attacking the wrapper deadlocks on BN)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


def _cuda_devices(inputs: torch.Tensor) -> list[int]:
    return [inputs.device.index or 0] if inputs.is_cuda else []


def check_eps(eps: float) -> float:
    """ε is an L∞ radius in [0, 1] pixel units."""
    if not 0.0 <= float(eps) <= 1.0:
        raise ValueError(f"eps must be in [0, 1] (pixel units of [0, 1] inputs), got {eps}")
    return float(eps)


def _check_steps(steps: int) -> int:
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return int(steps)


def _default_alpha(eps: float, steps: int, alpha: float | None) -> float:
    """Step size 2.5·ε/steps (Madry et al.) unless given."""
    if alpha is None:
        return 2.5 * eps / steps
    if alpha <= 0:
        raise ValueError(f"alpha (attack step size) must be positive, got {alpha}")
    return float(alpha)


def fgsm(eps: float) -> Attack:
    """FGSM: one signed-gradient step of size ε (fast, weak; a sanity check, not an evaluation)."""
    eps = check_eps(eps)
    return Attack("FGSM", eps, lambda m: torchattacks.FGSM(m, eps=eps))


def pgd(eps: float, steps: int = 20, alpha: float | None = None, random_start: bool = True) -> Attack:
    """PGD: ``steps`` signed-gradient steps from a random start, projected onto the ε-ball."""
    eps, steps = check_eps(eps), _check_steps(steps)
    step = _default_alpha(eps, steps, alpha)
    return Attack(
        f"PGD-{steps}",
        eps,
        lambda m: torchattacks.PGD(m, eps=eps, alpha=step, steps=steps, random_start=random_start),
    )


def trades_pgd(eps: float, steps: int = 10, alpha: float | None = None) -> Attack:
    """TRADES' inner maximisation: KL(f(x) ‖ f(x')) from x + 0.001·N(0, 1)."""
    eps, steps = check_eps(eps), _check_steps(steps)
    step = _default_alpha(eps, steps, alpha)
    return Attack(
        f"TRADES-PGD-{steps}", eps, lambda m: torchattacks.TPGD(m, eps=eps, alpha=step, steps=steps)
    )


def apgd(eps: float, steps: int = 50, loss: str = "ce", seed: int = 0) -> Attack:
    """APGD: PGD with an adaptive step size (Croce & Hein), cross-entropy or DLR loss."""
    eps, steps = check_eps(eps), _check_steps(steps)
    if loss not in ("ce", "dlr"):
        raise ValueError(f"apgd loss must be 'ce' or 'dlr', got {loss!r}")
    return Attack(
        f"APGD-{loss.upper()}-{steps}",
        eps,
        lambda m: torchattacks.APGD(m, norm="Linf", eps=eps, steps=steps, loss=loss, seed=seed),
        reseeds_global_rng=True,
    )


def autoattack_light(eps: float, num_classes: int = 10, seed: int = 0) -> Attack:
    """torchattacks' AutoAttack: its sub-attacks run 10 steps where the reference runs 100."""
    eps = check_eps(eps)
    return Attack(
        "AutoAttack (torchattacks, light)",
        eps,
        lambda m: torchattacks.AutoAttack(
            m, norm="Linf", eps=eps, version="standard", n_classes=num_classes, seed=seed
        ),
        reseeds_global_rng=True,
    )


def autoattack(eps: float, seed: int = 0) -> Attack:
    """The reference AutoAttack (PyPI ``pyautoattack``: 100-step APGD, FAB, 5,000-query Square)."""
    eps = check_eps(eps)
    try:
        from pyautoattack import AutoAttack as ReferenceAutoAttack
    except ImportError as error:
        raise ImportError(
            "attack 'autoattack' needs the reference implementation: pip install pyautoattack "
            "(or use 'autoattack-light', torchattacks' 10-step version)"
        ) from error

    def build(model: nn.Module) -> AttackFn:
        def run(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            adversary = ReferenceAutoAttack(model, eps=eps, norm="Linf", version="standard", seed=seed,
                                            device=inputs.device)
            adversary.verbose = False
            adversarial, _ = adversary.run_standard_evaluation(inputs, labels, batch_size=inputs.shape[0])
            return adversarial

        return run

    return Attack("AutoAttack (reference)", eps, build, reseeds_global_rng=True)


ATTACK_FACTORIES: dict[str, Callable[..., Any]] = {
    "fgsm": fgsm,
    "pgd": pgd,
    "trades-pgd": trades_pgd,
    "apgd": apgd,
    "autoattack-light": autoattack_light,
    "autoattack": autoattack,
}
