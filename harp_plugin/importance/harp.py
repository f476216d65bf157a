"""HARP, HYDRA and LWM as a Torch-Pruning importance (channel mode of methods.md §1–§2).

``fit`` learns channel scores (and, for HARP, per-layer kept fractions) on the model with
masks, then takes the masks off again; the importance then answers Torch-Pruning's groups
from what it learned, and :meth:`HarpImportance.pruning_ratio_dict` hands over the learned
kept fractions. Nothing falls back to weight magnitude: un-fitted is an error.
"""
from __future__ import annotations

import weakref
from typing import Any, Iterable

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader

from harp_plugin.importance.errors import NotFittedError
from harp_plugin.importance.phases import train_masks
from harp_plugin.importance.ratios import ROOT_TYPES, reconciled_ratio_dict
from harp_plugin.masking import MaskSet, attach_masks, remove_masks
from harp_plugin.models.device import model_device
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult
from harp_plugin.schedulers.gamma import IncrementalGamma

_OUT_CHANNEL_HANDLERS = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)


class HarpImportance(tp.importance.Importance):
    """Per-channel importance from learned scores; higher = keep.

    ``method``: "harp" (scores and per-layer rates learned), "hydra" (scores learned, the
    uniform ``target_kept`` everywhere) or "lwm" (scaled channel magnitude, no training).
    """

    def __init__(
        self,
        target_kept: float,
        method: str = "harp",
        *,
        kept_init: float | None = None,
        alpha: float = 0.1,
        gamma: IncrementalGamma | None = None,
    ) -> None:
        if method not in ("harp", "hydra", "lwm"):
            raise ValueError(f"HarpImportance method must be 'harp', 'hydra' or 'lwm', got {method!r}")
        if not 0 < target_kept <= 1:
            raise ValueError(f"target_kept (the kept fraction, 1 - pruning ratio) must be in (0, 1], got {target_kept}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (the floor a_min = alpha * target_kept) must be in (0, 1], got {alpha}")
        if kept_init is not None and not 0 < kept_init <= 1:
            raise ValueError(f"kept_init must be in (0, 1], got {kept_init}")
        self.target_kept = target_kept
        self.method = method
        self.kept_init = kept_init
        self.alpha = alpha
        self.gamma = gamma
        self._scores: weakref.WeakKeyDictionary[nn.Module, torch.Tensor] = weakref.WeakKeyDictionary()
        self._kept: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()
        self._names: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
        self._unmasked: list[weakref.ref[nn.Module]] = []
        self._sample_shape: tuple[int, ...] | None = None

    @property
    def fitted(self) -> bool:
        return self._sample_shape is not None

    def fit(
        self,
        model: nn.Module,
        train_loader: DataLoader | None = None,
        *,
        loss: TrainingLoss | None = None,
        val_loader: DataLoader | None = None,
        config: TrainConfig | None = None,
        example_inputs: torch.Tensor | None = None,
        ignored_layers: Iterable[nn.Module] = (),
        val_attack: Attack | None = None,
        progress: bool = False,
        strict: bool = True,
    ) -> TrainResult:
        """Learn channel scores on ``model`` (θ frozen), then leave it dense and unmasked.

        LWM needs only ``example_inputs`` (or a ``train_loader`` to take one from).
        """
        if example_inputs is None:
            if train_loader is None:
                raise ValueError("fit needs example_inputs or a train_loader to take them from")
            first = next(iter(train_loader), None)
            if first is None:
                raise ValueError("HarpImportance.fit got an empty train_loader (it yields no batch)")
            example_inputs = first[0][:1]
        example_inputs = example_inputs.to(model_device(model))
        masks = attach_masks(
            model, self.target_kept, mode="channel", method=self.method, kept_init=self.kept_init,
            alpha=self.alpha, ignored_layers=ignored_layers, example_inputs=example_inputs,
        )
        result = train_masks(
            model, masks, loss, train_loader, val_loader, config,
            gamma=self.gamma, val_attack=val_attack, progress=progress, strict=strict,
        )
        self.adopt(masks, example_inputs)
        return result

    def adopt(self, masks: MaskSet, example_inputs: torch.Tensor) -> None:
        """Take the learned channel scores and kept counts from ``masks``; remove the masks."""
        if masks.mode != "channel":
            raise ValueError(f"HarpImportance needs channel masks, got mode={masks.mode!r}")
        masks.freeze()
        for name, mask in masks.masks().items():
            layer = masks.layers[name]
            scores = mask.scores.detach().abs()
            self._scores[layer] = scores / scores.max().clamp_min(torch.finfo(scores.dtype).tiny)
            self._kept[layer] = int(mask.mask.sum())
            self._names[layer] = name
        self._unmasked = [
            weakref.ref(m) for m in masks.model.modules() if isinstance(m, ROOT_TYPES) and m not in self._scores
        ]
        self._sample_shape = tuple(example_inputs.shape[1:])
        remove_masks(masks, how="dense")

    @property
    def ignored_layers(self) -> list[nn.Module]:
        """Conv2d/Linear layers that learned no scores (the classifier, layers ignored in fit)."""
        self._require_fitted()
        return [m for m in (ref() for ref in self._unmasked) if m is not None]

    @torch.no_grad()
    def __call__(self, group: tp.Group, **_: Any) -> torch.Tensor:
        """Mean over the group's masked layers of their max-normalised |s| (root order)."""
        self._require_fitted()
        total = torch.zeros(len(group[0].idxs))
        found = 0
        for item in group.items:
            layer = item.dep.target.module
            if item.dep.handler not in _OUT_CHANNEL_HANDLERS or layer not in self._scores:
                continue
            scores = self._scores[layer]
            if scores.numel() != layer.weight.shape[0]:
                raise NotFittedError(
                    f"layer {self._names[layer]!r} has {layer.weight.shape[0]} output channels but "
                    f"HarpImportance learned {scores.numel()}: the model changed after fit; fit again"
                )
            rows = scores[torch.as_tensor(item.idxs)].to(total)
            total.index_add_(0, torch.as_tensor(item.root_idxs), rows)
            found += 1
        if found == 0:
            root = group[0].dep.target
            raise NotFittedError(
                f"HarpImportance has no learned scores for the group rooted at {root.name}: it was "
                "fitted to another model (or that layer was ignored in fit); fit it on this model"
            )
        return total / found

    def pruning_ratio_dict(self, model: nn.Module, example_inputs: torch.Tensor) -> dict[nn.Module, float]:
        """The learned kept fractions as MetaPruner ratios, reconciled across coupled layers."""
        self._check_inputs(example_inputs)
        kept = {layer: count for layer, count in self._kept.items()}
        if not any(any(m is layer for m in model.modules()) for layer in kept):
            raise NotFittedError(f"HarpImportance was fitted to another model, not this {type(model).__name__}")
        return reconciled_ratio_dict(model, example_inputs.to(model_device(model)), kept, self.ignored_layers)

    def learned_kept_fractions(self) -> dict[str, float]:
        """Each scored layer's learned kept fraction (kept channels / channels at fit), by name."""
        self._require_fitted()
        return {self._names[layer]: kept / self._scores[layer].numel() for layer, kept in self._kept.items()}

    def make_pruner(self, model: nn.Module, example_inputs: torch.Tensor, **kwargs: Any) -> tp.MetaPruner:
        """``tp.MetaPruner`` with this importance, the learned ratios and the classifier ignored."""
        ignored = list(kwargs.pop("ignored_layers", [])) + self.ignored_layers
        example_inputs = example_inputs.to(model_device(model))
        return tp.MetaPruner(
            model, example_inputs, importance=self,
            pruning_ratio_dict=self.pruning_ratio_dict(model, example_inputs),
            ignored_layers=ignored, **kwargs,
        )

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                f"HarpImportance(method={self.method!r}) is not fitted: call "
                "imp.fit(model, train_loader, loss=..., val_loader=..., config=...) first "
                "(there is no magnitude fallback)"
            )

    def _check_inputs(self, example_inputs: torch.Tensor) -> None:
        self._require_fitted()
        if tuple(example_inputs.shape[1:]) != self._sample_shape:
            raise ValueError(
                f"example_inputs have per-sample shape {tuple(example_inputs.shape[1:])}, but "
                f"HarpImportance was fitted on inputs of shape {self._sample_shape}"
            )
