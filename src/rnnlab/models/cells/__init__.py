"""The table of recurrent cells: one entry per cell, found by name.

Every recurrent cell the lab knows is one :class:`Cell` in this registry. The entry
holds everything the rest of the code needs to know about the cell, so that the
encoder, the seq2seq decoder, the conditioned generator and gradient flow never branch
on a cell's name:

* ``make``: the layer factory (a stack of layers over ``(B, T, F)`` inputs with the
  call ``layer(x, state) -> (outputs, state)``, like ``nn.GRU(batch_first=True)``);
* ``state``: the names of the state tensors (``("h",)`` or ``("h", "c")``), each
  shaped ``(layers * directions, B, H)``; :meth:`Cell.initial_state` builds zeros;
* ``init``: the init and bias rules (``model.init`` and ``model.forget_bias``);
* ``packable``: whether the layer reads a ``PackedSequence``. A cell that cannot is
  given ``lengths=`` instead and must itself ignore padding (and, bidirectional, read
  each sequence backwards from its own last real step);
* ``step``: the single-step form used by decoders and generation;
* ``blocks``: the ``model.block`` values it can be stacked as (``plain``: bare layers
  like ``nn.GRU``; ``residual``: pre-norm residual blocks with an MLP, see
  :class:`.scan.ResidualStack`).

A new cell is one module in this package that calls :func:`register`; the package
imports every module in it the first time the table is read, so no list elsewhere
has to learn the new name (``conf/model/<name>.yaml`` makes it a ``model=`` choice).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.core.errors import require

State = Tensor | tuple[Tensor, ...]
INITS = ("default", "xavier", "orthogonal", "identity")


@dataclass(frozen=True)
class LayerArgs:
    """What a layer factory is given: the shape of the stack and the cell's own options."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)
    block: str = "plain"


def _no_init(layer: nn.Module, init: str, forget_bias: float, hidden_size: int) -> None:
    """Cells whose factory already initialises them as their paper says."""


def _step_by_call(layer: nn.Module, x: Tensor, state: State | None) -> tuple[Tensor, State]:
    """One step as a length-1 sequence: (B, F) -> (B, D), new state."""
    out, state = layer(x.unsqueeze(1), state)
    return out[:, 0], state


@dataclass(frozen=True)
class Cell:
    """One recurrent cell: how to build, initialise, start and step it."""

    name: str
    make: Callable[[LayerArgs], nn.Module]
    doc: str
    state: tuple[str, ...] = ("h",)
    packable: bool = True
    init: Callable[[nn.Module, str, float, int], None] = _no_init
    inits: tuple[str, ...] = INITS
    step: Callable[[nn.Module, Tensor, State | None], tuple[Tensor, State]] = _step_by_call
    options: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ("plain",)

    def initial_state(self, rows: int, batch: int, hidden_size: int,
                      device: torch.device | None = None) -> State:
        """Zeros for every state tensor, each ``(rows, batch, hidden_size)``."""
        zeros = [torch.zeros(rows, batch, hidden_size, device=device) for _ in self.state]
        return zeros[0] if len(zeros) == 1 else tuple(zeros)

    def build(self, args: LayerArgs) -> nn.Module:
        """The layer, after checking the cell's own options."""
        unknown = sorted(set(args.options) - set(self.options))
        require(not unknown, f"model.cell_options has {', '.join(unknown)}, which "
                f"model.cell={self.name} does not take; it takes "
                f"{', '.join(self.options) or 'no options'}.")
        require(args.block in self.blocks, f"model.block={args.block} does not apply to "
                f"model.cell={self.name}; use {' or '.join(self.blocks)}.")
        return self.make(args)


_CELLS: dict[str, Cell] = {}
_discovered = False


def register(cell: Cell) -> Cell:
    """Add ``cell`` to the table (called by each cell module at import)."""
    if cell.name in _CELLS and _CELLS[cell.name] is not cell:
        raise ValueError(f"two cells are registered as {cell.name!r}")
    _CELLS[cell.name] = cell
    return cell


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


def cell_names() -> tuple[str, ...]:
    """Every registered cell, in registration order (the fused cells first)."""
    _discover()
    return tuple(_CELLS)


def get_cell(name: str, key: str = "model.cell") -> Cell:
    """The cell called ``name``; a clear error naming ``key`` if there is none."""
    _discover()
    require(name in _CELLS, f"{key}={name!r} is unknown; use one of {', '.join(_CELLS)}.")
    return _CELLS[name]


__all__ = ["INITS", "Cell", "LayerArgs", "State", "cell_names", "get_cell", "register"]
