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
from harp_plugin.importance.phases import check_selection, train_masks
from harp_plugin.importance.ratios import ROOT_TYPES, reconciled_ratio_dict
from harp_plugin.masking import MaskSet, attach_masks, remove_masks
from harp_plugin.masking.mask_set import check_kept_target
from harp_plugin.masking.projection import Projection
from harp_plugin.models.device import model_device
from harp_plugin.robust.attacks import Attack
from harp_plugin.robust.losses import TrainingLoss
from harp_plugin.robust.training import TrainConfig, TrainResult
from harp_plugin.schedulers.gamma import IncrementalGamma

_OUT_CHANNEL_HANDLERS = (
    tp.prune_conv_out_channels, tp.prune_linear_out_channels, tp.prune_depthwise_conv_out_channels,
    tp.prune_multihead_attention_out_channels,
)


class HarpImportance(tp.importance.Importance):
    """Per-channel importance from learned scores; higher = keep.

    ``method``: "harp" (scores and per-group rates learned), "hydra" (scores learned, the
    uniform ``target_kept`` everywhere) or "lwm" (scaled channel magnitude, no training).
    One mask per Torch-Pruning group is trained, so what ``pruner.step()`` removes is what
    was switched off in training. HARP's budget is the FLOPs share that uniform pruning at
    ``target_kept`` keeps, or ``flops_target`` (0.1 = 90% fewer FLOPs) where given; its
    learned rates are projected onto it after rate learning (``masking.projection``).
    """

    def __init__(
        self,
        target_kept: float,
        method: str = "harp",
        *,
        kept_init: float | None = None,
        alpha: float = 0.1,
        gamma: IncrementalGamma | None = None,
        flops_target: float | None = None,
    ) -> None:
        if method not in ("harp", "hydra", "lwm"):
            raise ValueError(f"HarpImportance method must be 'harp', 'hydra' or 'lwm', got {method!r}")
        check_kept_target("target_kept", target_kept)
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (the floor a_min = alpha * target_kept) must be in (0, 1], got {alpha}")
        if kept_init is not None and not 0 < kept_init <= 1:
            raise ValueError(f"kept_init must be in (0, 1], got {kept_init}")
        if flops_target is not None:
            check_kept_target("flops_target", flops_target)
            if method != "harp":
                raise ValueError(f"flops_target needs learned rates (method='harp'), got method={method!r}")
        self.flops_target = flops_target
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
        self.pruner_options: dict = {}
        self.projection: Projection | None = None

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
        pruner_options: dict | None = None,
    ) -> TrainResult:
        """Learn channel scores on ``model`` (θ frozen), then leave it dense and unmasked.

        LWM needs only ``example_inputs`` (or a ``train_loader`` to take one from).
        ``pruner_options``: the ``tp.MetaPruner`` options that shape its groups (``num_heads``,
        ``unwrapped_parameters``, …); :meth:`make_pruner` reuses them. A ``CertifiedLoss``
        selects the epoch kept on IBP-certified validation accuracy (``val_attack`` stays None).
        """
        check_selection(loss, val_attack)
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
            pruner_options=pruner_options,
        )
        self.pruner_options = dict(pruner_options or {})
        try:
            result = train_masks(
                model, masks, loss, train_loader, val_loader, config, gamma=self.gamma, budget=self.flops_target,
                val_attack=val_attack, progress=progress, strict=strict,
            )
        except BaseException:
            remove_masks(masks, how="dense")  # θ was frozen: the model is back as the user gave it
            raise
        self.projection = masks.projection
        self.adopt(masks, example_inputs)
        return result

    def adopt(self, masks: MaskSet, example_inputs: torch.Tensor) -> None:
        """Take the learned group scores and kept counts from ``masks``; remove the masks.

        Every Conv/Linear/attention member of a group gets the group's scores at its own
        channel positions, so ``imp(group)`` answers the same for any root MetaPruner picks.
        """
        if masks.mode != "channel":
            raise ValueError(f"HarpImportance needs channel masks, got mode={masks.mode!r}")
        masks.freeze()
        names = {module: name for name, module in masks.model.named_modules()}
        for name, mask in masks.masks().items():
            group = masks.groups[name]
            scores = mask.scores.detach().abs()
            scores = (scores / scores.max().clamp_min(torch.finfo(scores.dtype).tiny)).repeat(group.channel_groups)
            kept_share = int(mask.mask.sum()) / mask.units
            for module, idxs, root_idxs in group.outputs:
                width = _out_width(module)
                member = torch.zeros(width, dtype=scores.dtype, device=scores.device)
                member[torch.as_tensor(idxs, device=scores.device)] = scores[torch.as_tensor(root_idxs, device=scores.device)]
                self._scores[module] = member
                self._kept[module] = round(kept_share * width)
                self._names[module] = names.get(module, type(module).__name__)
        inside_scored = {id(sub) for m in self._scores for sub in m.modules()}
        self._unmasked = [
            weakref.ref(m) for m in masks.model.modules() if isinstance(m, ROOT_TYPES) and id(m) not in inside_scored
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
            if scores.numel() != _out_width(layer):
                raise NotFittedError(
                    f"layer {self._names[layer]!r} has {_out_width(layer)} output channels but "
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
        """``tp.MetaPruner`` with this importance, the learned ratios, the classifier ignored, the
        options of ``fit`` and no pruning of groups HARP did not learn."""
        ignored = list(kwargs.pop("ignored_layers", [])) + self.ignored_layers
        example_inputs = example_inputs.to(model_device(model))
        options = {"pruning_ratio": 0.0, **self.pruner_options, **kwargs}
        return tp.MetaPruner(
            model, example_inputs, importance=self,
            pruning_ratio_dict=self.pruning_ratio_dict(model, example_inputs),
            ignored_layers=ignored, **options,
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


def _out_width(module: nn.Module) -> int:
    return module.embed_dim if isinstance(module, nn.MultiheadAttention) else module.weight.shape[0]
