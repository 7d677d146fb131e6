"""Cells whose recurrence is element-wise: exact scans over time, and the stacks built on them.

When every gate of a cell depends on ``x_t`` alone (not on ``h_{t-1}``), its recurrence
is linear in the state, ``h_t = a_t * h_{t-1} + b_t``, with ``a_t`` and ``b_t`` known
for all steps at once (minGRU, minLSTM; Feng et al. 2024). All the matrix products then
run over the whole sequence at once, and what is left along time is a few element-wise
operations per step over ``batch x hidden`` values. :func:`linear_scan` does exactly
that recurrence, forward and, in its backward pass, the same scan in reverse time
(``g_t = dL/dh_t + a_{t+1} g_{t+1}``, ``dL/db_t = g_t``, ``dL/da_t = g_t h_{t-1}``), so no
autograd graph of ``T`` steps is ever built. IndRNN's ``h_t = relu(x_t + u * h_{t-1})``
is not linear but just as element-wise; :func:`relu_scan` runs it the same way.

Why not the parallel log-space form (Heinsen 2023, :func:`scan`, kept as a reference):
on a CPU the ``logcumsumexp`` it needs costs far more than the few multiply-adds it
replaces (measured at batch 32, hidden 256, 2 threads: 3.6 s against 0.12 s for a
sequential loop at T = 2048), and a chunked parallel form (cumulative products inside
chunks of ``C`` steps, a sequential carry across them) was 5-10x slower than the loop.
The loop runs as a small compiled kernel (numba, a dependency of librosa and so always
installed) on CPU tensors of float32/float64, which is 2-5x faster again than stepping
in PyTorch; anything else (a GPU, bf16, numba missing) steps in PyTorch, writing each
step in place. ``torch.compile`` does not help a loop of ``T`` tiny steps (it unrolls it).

The scan is exact: the same multiply-adds as one step at a time, in the same order. One
step (decoding, generation, the gradient-flow probe) is the same call with ``T = 1``.
minGRU and minLSTM go one step further (:mod:`.gated`): their gates are computed inside
the loop, so no ``a`` or ``b`` tensor is ever written.

:class:`ScanStack` stacks such layers like ``nn.GRU``: states ``(layers * dirs, B, H)``,
dropout between layers, and a backward direction that reads each sequence from its own
last real step (``lengths``), so padding never enters a state or a real output. With
``model.block=residual`` it stacks them as their papers do instead (:class:`ResidualStack`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.models.cells import LayerArgs

#: ``model.block``: bare stacked layers (``plain``) or pre-norm residual blocks
BLOCKS = ("plain", "residual")
#: the MLP of a residual block is this many times wider than the block (Feng et al.: 4)
MLP_RATIO = 4


def g(x: Tensor) -> Tensor:
    """g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0): a positive, unbounded candidate."""
    return torch.where(x >= 0, F.relu(x) + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log of :func:`g` (for the log-space form)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


# ---- the compiled kernels -----------------------------------------------------------------
@functools.cache
def _kernels() -> Any:
    """numba-compiled loops (compiled on first use, cached on disk), or None without numba."""
    try:
        import numba  # heavy (LLVM): imported only when a scan first runs on the CPU
    except ImportError:  # pragma: no cover - librosa depends on numba
        return None
    jit = numba.njit(cache=True, nogil=True)

    @jit
    def linear_fwd(a, b, h0, out):  # noqa: ANN001, ANN202 - numba signatures
        batch, steps, hidden = a.shape
        for i in range(batch):
            for j in range(hidden):
                out[i, 0, j] = a[i, 0, j] * h0[i, j] + b[i, 0, j]
            for t in range(1, steps):
                for j in range(hidden):
                    out[i, t, j] = a[i, t, j] * out[i, t - 1, j] + b[i, t, j]

    @jit
    def linear_bwd(a, out, h0, grad, ga, gb, gh0):  # noqa: ANN001, ANN202
        batch, steps, hidden = a.shape
        for i in range(batch):
            for j in range(hidden):
                gh0[i, j] = 0.0
            for t in range(steps - 1, 0, -1):
                for j in range(hidden):
                    c = grad[i, t, j] + gh0[i, j]
                    gb[i, t, j] = c
                    ga[i, t, j] = c * out[i, t - 1, j]
                    gh0[i, j] = a[i, t, j] * c
            for j in range(hidden):
                c = grad[i, 0, j] + gh0[i, j]
                gb[i, 0, j] = c
                ga[i, 0, j] = c * h0[i, j]
                gh0[i, j] = a[i, 0, j] * c

    @jit
    def relu_fwd(x, u, h0, out):  # noqa: ANN001, ANN202
        batch, steps, hidden = x.shape
        for i in range(batch):
            for j in range(hidden):
                out[i, 0, j] = max(x[i, 0, j] + u[j] * h0[i, j], 0.0)
            for t in range(1, steps):
                for j in range(hidden):
                    out[i, t, j] = max(x[i, t, j] + u[j] * out[i, t - 1, j], 0.0)

    @jit
    def relu_bwd(u, out, h0, grad, gx, gu, gh0):  # noqa: ANN001, ANN202
        batch, steps, hidden = out.shape
        for i in range(batch):
            for j in range(hidden):
                gh0[i, j] = 0.0
                gu[i, j] = 0.0
            for t in range(steps - 1, -1, -1):
                for j in range(hidden):
                    d = grad[i, t, j] + gh0[i, j] if out[i, t, j] > 0 else 0.0
                    gx[i, t, j] = d
                    gu[i, j] += d * (out[i, t - 1, j] if t > 0 else h0[i, j])
                    gh0[i, j] = u[j] * d

    return dict(linear_fwd=linear_fwd, linear_bwd=linear_bwd, relu_fwd=relu_fwd,
                relu_bwd=relu_bwd)


def _compiled(*tensors: Tensor) -> Any:
    """The kernels when every tensor is a CPU float32/float64 tensor of one dtype, else None."""
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64) or any(
            t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return None
    return _kernels()


def _np(t: Tensor) -> Any:
    return t.detach().contiguous().numpy()


# ---- h_t = a_t * h_{t-1} + b_t ----------------------------------------------------------------
def _linear_fwd_torch(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    out = torch.empty_like(b)
    h = h0
    for t in range(a.shape[1]):
        h = torch.addcmul(b[:, t], a[:, t], h, out=out[:, t])
    return out


def _linear_bwd_torch(a: Tensor, out: Tensor, h0: Tensor, grad: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor]:
    gb = torch.empty_like(grad)
    carry = torch.zeros_like(h0)
    for t in range(a.shape[1] - 1, -1, -1):
        c = torch.add(grad[:, t], carry, out=gb[:, t])
        carry = a[:, t] * c
    prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], 1)
    return gb * prev, gb, carry


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        k = _compiled(a, b, h0)
        if k is None:
            out = _linear_fwd_torch(a, b, h0)
        else:
            out = torch.empty(a.shape, dtype=a.dtype)
            k["linear_fwd"](_np(a), _np(b), _np(h0), out.numpy())
        ctx.save_for_backward(a, out, h0)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, out, h0 = ctx.saved_tensors
        k = _compiled(a, out, h0, grad)
        if k is None:
            return _linear_bwd_torch(a, out, h0, grad)
        ga, gb, gh0 = torch.empty_like(out), torch.empty_like(out), torch.empty_like(h0)
        k["linear_bwd"](_np(a), _np(out), _np(h0), _np(grad), ga.numpy(), gb.numpy(),
                        gh0.numpy())
        return ga, gb, gh0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All states of ``h_t = a_t h_{t-1} + b_t`` over dim 1: (B, T, H) -> (B, T, H).

    Exact (one multiply-add per step, as the recurrence), with a backward pass that is
    the same scan in reverse time; ``h0`` (B, H) defaults to zeros.
    """
    h0 = torch.zeros_like(a[:, 0]) if h0 is None else h0.to(a.dtype)
    b = b.to(a.dtype)
    return _LinearScan.apply(a.contiguous(), b.contiguous(), h0.contiguous())


# ---- h_t = relu(x_t + u * h_{t-1}) -------------------------------------------------------------
def _relu_fwd_torch(x: Tensor, u: Tensor, h0: Tensor) -> Tensor:
    out = torch.empty_like(x)
    h = h0
    for t in range(x.shape[1]):
        h = torch.addcmul(x[:, t], u, h, out=out[:, t]).clamp_(min=0)
    return out


def _relu_bwd_torch(u: Tensor, out: Tensor, h0: Tensor, grad: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    gx = torch.empty_like(grad)
    carry = torch.zeros_like(h0)
    for t in range(out.shape[1] - 1, -1, -1):
        d = torch.add(grad[:, t], carry, out=gx[:, t]).mul_(out[:, t] > 0)
        carry = u * d
    prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], 1)
    return gx, (gx * prev).sum((0, 1)), carry


class _ReluScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, u: Tensor, h0: Tensor) -> Tensor:
        k = _compiled(x, u, h0)
        if k is None:
            out = _relu_fwd_torch(x, u, h0)
        else:
            out = torch.empty(x.shape, dtype=x.dtype)
            k["relu_fwd"](_np(x), _np(u), _np(h0), out.numpy())
        ctx.save_for_backward(u, out, h0)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u, out, h0 = ctx.saved_tensors
        k = _compiled(u, out, h0, grad)
        if k is None:
            return _relu_bwd_torch(u, out, h0, grad)
        gx, gh0 = torch.empty_like(out), torch.empty_like(h0)
        gu = torch.empty_like(h0)  # per row, summed below
        k["relu_bwd"](_np(u), _np(out), _np(h0), _np(grad), gx.numpy(), gu.numpy(),
                      gh0.numpy())
        return gx, gu.sum(0), gh0


def relu_scan(x: Tensor, u: Tensor, h0: Tensor | None = None) -> Tensor:
    """All states of ``h_t = relu(x_t + u * h_{t-1})`` (IndRNN): (B, T, H), u (H,) -> (B, T, H)."""
    h0 = torch.zeros_like(x[:, 0]) if h0 is None else h0.to(x.dtype)
    return _ReluScan.apply(x.contiguous(), u.to(x.dtype).contiguous(), h0.contiguous())


# ---- the log-space form, and references -------------------------------------------------------
def scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """The log-space parallel form (Heinsen 2023): the same states from ``log a`` and
    ``log b`` (``b > 0``) by two cumulative operations, ``h_t = exp(A_t) h_0 +
    exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s))`` with ``A_t = sum_{s<=t} log a_s``.
    Kept for inputs given as logs; the cells use :func:`linear_scan`, which is faster here."""
    a_star = torch.cumsum(log_a, dim=1)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.unsqueeze(1)
    return h


def scan_sequential(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """The same states one step at a time from logs (the reference the scans must match)."""
    h = torch.zeros_like(log_a[:, 0]) if h0 is None else h0
    out = []
    for t in range(log_a.shape[1]):
        h = torch.exp(log_a[:, t]) * h + torch.exp(log_b[:, t])
        out.append(h)
    return torch.stack(out, 1)


def reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each row's first ``lengths[b]`` steps (dim 1) and leave its padding in place."""
    steps = x.shape[1]
    if lengths is None:
        return x.flip(1)
    t = torch.arange(steps, device=x.device)[None, :]
    n = lengths.to(x.device).long()[:, None]
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


# ---- layers and stacks --------------------------------------------------------------------------
class ScanLayer(nn.Module):
    """One direction of one layer: subclasses give the coefficients of the recurrence
    (or override ``forward`` for a recurrence that is not linear)."""

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, F) inputs -> (a, b), each (B, T, H)."""
        raise NotImplementedError

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        a, b = self.coefficients(x)
        return linear_scan(a, b, h0)


def _directions(layers: list[nn.Module], x: Tensor, hidden: Tensor | None, first_row: int,
                lengths: Tensor | None, last: Tensor, finals: list[Tensor]) -> Tensor:
    """One level of a stack: each direction's layer over ``x`` (the backward one from each
    sequence's last real step); appends each direction's final state to ``finals``."""
    rows = torch.arange(x.shape[0], device=x.device)
    outs = []
    for d, layer in enumerate(layers):
        h0 = None if hidden is None else hidden[first_row + d]
        if d == 0:
            h = layer(x, h0)
            finals.append(h[rows, last])
        else:  # read backwards from each sequence's last real step
            h = layer(reverse_within(x, lengths), h0)
            finals.append(h[rows, last])
            h = reverse_within(h, lengths)
        outs.append(h)
    return outs[0] if len(outs) == 1 else torch.cat(outs, -1)


def _last_steps(x: Tensor, lengths: Tensor | None) -> Tensor:
    batch, steps = x.shape[:2]
    if lengths is None:
        return torch.full((batch,), steps - 1, device=x.device, dtype=torch.long)
    return (lengths.to(x.device).long() - 1).clamp(min=0)


class ScanStack(nn.Module):
    """Stacked, optionally bidirectional ``ScanLayer``s with ``nn.GRU``'s calling convention.

    ``forward(x, hidden=None, lengths=None) -> (outputs (B, T, dirs*H), hidden)``; with
    ``lengths`` the returned state is each sequence's state after its last real step.
    """

    def __init__(self, args: LayerArgs, make_layer: Callable[[int, int], ScanLayer]) -> None:
        super().__init__()
        self.input_size = args.input_size
        self.hidden_size = args.hidden_size
        self.num_layers = args.num_layers
        self.dirs = 2 if args.bidirectional else 1
        self.dropout = float(args.dropout) if args.num_layers > 1 else 0.0
        self.layers = nn.ModuleList(
            make_layer(args.input_size if i == 0 else self.dirs * args.hidden_size,
                       args.hidden_size)
            for i in range(args.num_layers) for _ in range(self.dirs))

    def forward(self, x: Tensor, hidden: Tensor | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        last = _last_steps(x, lengths)
        finals: list[Tensor] = []
        for level in range(self.num_layers):
            if level > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            row = level * self.dirs
            x = _directions(list(self.layers[row: row + self.dirs]), x, hidden, row, lengths,
                            last, finals)
        return x, torch.stack(finals)


class ResidualStack(nn.Module):
    """Element-wise recurrent layers as pre-norm residual blocks (``model.block=residual``).

    The way the papers use these cells (Feng et al. 2024 for minGRU and minLSTM; Li et al.
    2018 stack IndRNNs as residual blocks): an input projection to the block width
    ``D = dirs * H``, then per level ``x = x + cells(LayerNorm(x))`` (the directions'
    states side by side) and ``x = x + MLP(LayerNorm(x))`` (``D -> 4D -> D``, GELU), and a
    final LayerNorm. Every part but the cells reads one step alone, so the stack stays
    causal and a length-1 call is one step; the states are the cells' states, shaped
    ``(layers * dirs, B, H)`` like :class:`ScanStack`'s. ``dropout`` is applied to each
    branch's output.
    """

    def __init__(self, args: LayerArgs, make_layer: Callable[[int, int], ScanLayer]) -> None:
        super().__init__()
        self.input_size = args.input_size
        self.hidden_size = args.hidden_size
        self.num_layers = args.num_layers
        self.dirs = 2 if args.bidirectional else 1
        self.dropout = float(args.dropout)
        width = self.dirs * args.hidden_size
        self.project = (nn.Identity() if args.input_size == width
                        else nn.Linear(args.input_size, width))
        self.layers = nn.ModuleList(make_layer(width, args.hidden_size)
                                    for _ in range(args.num_layers) for _ in range(self.dirs))
        self.mix_norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(args.num_layers))
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(args.num_layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, MLP_RATIO * width), nn.GELU(),
                          nn.Linear(MLP_RATIO * width, width))
            for _ in range(args.num_layers))
        self.norm = nn.LayerNorm(width)

    def _mlp(self, level: int, x: Tensor) -> Tensor:
        y = self.mlps[level](self.mlp_norms[level](x))
        return x + F.dropout(y, self.dropout, self.training)

    def forward(self, x: Tensor, hidden: Tensor | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        last = _last_steps(x, lengths)
        finals: list[Tensor] = []
        x = self.project(x)
        for level in range(self.num_layers):
            row = level * self.dirs
            y = _directions(list(self.layers[row: row + self.dirs]), self.mix_norms[level](x),
                            hidden, row, lengths, last, finals)
            x = self._mlp(level, x + F.dropout(y, self.dropout, self.training))
        return self.norm(x), torch.stack(finals)

    def readout(self, x: Tensor, states: Tensor) -> Tensor:
        """One step's output from its input (B, F) and the cells' new states
        (layers, B, H) (unidirectional): each cell's output is its state, so the output
        is a function of the states, which is what the gradient-flow probe differentiates."""
        x = self.project(x)
        for level in range(self.num_layers):
            x = self._mlp(level, x + F.dropout(states[level], self.dropout, self.training))
        return self.norm(x)


def scan_stack(args: LayerArgs, make_layer: Callable[[int, int], ScanLayer]) -> nn.Module:
    """The stack ``args.block`` asks for: bare layers, or residual blocks."""
    return (ResidualStack if args.block == "residual" else ScanStack)(args, make_layer)
