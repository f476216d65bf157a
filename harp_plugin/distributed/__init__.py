"""torch.distributed support: identical decisions on every rank, rank 0 writes.

Training averages gradients over ranks after every backward pass (what DDP's reducer
computes); importance scores, learned ratios and BN statistics are reduced before any
pruning decision; evaluation and certification shard the batches and gather the counts.
"""
from harp_plugin.distributed.collectives import (
    average_buffers,
    average_gradients,
    average_tensor,
    broadcast_state,
    from_main,
    gather_objects,
)
from harp_plugin.distributed.context import (
    active,
    init_from_environment,
    is_main,
    launched_by_torchrun,
    rank,
    torchrun_job,
    world_size,
)
from harp_plugin.distributed.importance import RankAveragedImportance
from harp_plugin.distributed.sharding import my_batches, set_epoch, shard_training_loader

__all__ = [
    "RankAveragedImportance",
    "active",
    "average_buffers",
    "average_gradients",
    "average_tensor",
    "broadcast_state",
    "from_main",
    "gather_objects",
    "init_from_environment",
    "is_main",
    "launched_by_torchrun",
    "my_batches",
    "rank",
    "set_epoch",
    "shard_training_loader",
    "torchrun_job",
    "world_size",
]
