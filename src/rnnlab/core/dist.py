"""Which process this is: rank helpers that every layer may use.

Launchers (torchrun, SLURM, Lightning's DDP) set the rank in the environment before any
trainer or process group exists, so :func:`global_rank` reads the environment; once a
process group is up, :func:`rank_world` and :func:`gather_objects` ask it. Every
collective here must be called by all ranks in the same order, or the job hangs.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch

T = TypeVar("T")

RANK_ENV_KEYS = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's rank as the launchers set it before any trainer exists (0 alone)."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit() and int(os.environ[key]) > 0:
            return int(os.environ[key])
    node, local = os.environ.get("NODE_RANK", "0"), os.environ.get("LOCAL_RANK", "0")
    if node.isdigit() and local.isdigit() and (int(node) or int(local)):
        return int(node) * 1000 + int(local)  # exact value unknown here; only "not zero" matters
    return 0


def is_rank_zero() -> bool:
    return global_rank() == 0


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_objects(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process).

    Picklable Python objects of any size (counters, token lists, small arrays): what
    eval hooks need to merge once per epoch, not per step.
    """
    _, world = rank_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out
