"""The engine moved out of certify/: every import path users already have keeps working and
names the same object as the new home (a broken re-export would fail here)."""
from __future__ import annotations

import harp_plugin
from harp_plugin import bounds, certify
from harp_plugin.certify import importance, layers, losses, schedule
from harp_plugin.importance.stability import StabilityImportance
from harp_plugin.robust.certified import CertifiedLoss, StabilityRegulariser
from harp_plugin.schedulers.geometric import GeometricScheduler


def test_old_import_paths_name_the_moved_objects():
    assert importance.StabilityImportance is StabilityImportance
    assert schedule.GeometricScheduler is GeometricScheduler
    assert losses.CertifiedLoss is CertifiedLoss and losses.StabilityRegulariser is StabilityRegulariser
    assert layers.BoundOp is bounds.operators.BoundOp
    for name in certify.__all__:
        assert getattr(certify, name) is getattr(bounds, name)


def test_top_level_exports_follow_the_move():
    assert harp_plugin.StabilityImportance is StabilityImportance
    assert harp_plugin.GeometricScheduler is GeometricScheduler
    assert harp_plugin.CertifiedLoss is CertifiedLoss
    assert harp_plugin.compute_bounds is bounds.compute_bounds
