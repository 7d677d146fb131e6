"""minGRU and minLSTM in one pass each way: the gates computed inside the scan's loop.

:func:`.scan.linear_scan` takes the coefficients ``a_t`` and ``b_t`` ready-made. Built from
the input projection with PyTorch operations, they cost a dozen full passes over
``batch x time x hidden`` values forward and as many again backward (sigmoids, the
candidate's ``g``, products, their gradients and the temporaries between them), which at
long lengths cost several times the scan itself. :func:`gated_scan` reads the projection
``W x_t + b`` and computes each gate where the recurrence needs it, forward, keeping the
gate values (as many as the projection has) for the reverse-time pass that gives the
projection's gradient, which then costs a few multiply-adds per value and no exp. Rows of the batch are split
over the threads PyTorch is allowed (``torch.get_num_threads()``), each running the
compiled loop with the GIL released.

The numbers are those of the cells' PyTorch form (:func:`coefficients`, the fallback on a
GPU, for bf16 or without numba), computed in the inputs' precision as that form is.

minGRU (``z = sigmoid(k)``, ``a = 1 - z``, ``b = z g(c)``)::

    dL/dk = a z G (g(c) - h_{t-1}),   dL/dc = G z g'(c)

minLSTM (``f, i = sigmoid(k_f), sigmoid(k_i)``, ``a = f / (f + i)``, ``b = i / (f + i) g(c)``)::

    dL/dk_f = f (1 - f) i / (f + i)^2 G (h_{t-1} - g(c)),
    dL/dk_i = i (1 - i) f / (f + i)^2 G (g(c) - h_{t-1}),   dL/dc = G i / (f + i) g'(c)

where ``G = dL/dh_t`` (the carry from later steps included) and ``dL/dh_{t-1} += a G``.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.models.cells.scan import _compiled, _np, g, linear_scan

#: the projection's width per hidden unit, by cell
WIDTH = {"mingru": 2, "minlstm": 3}
#: below this many values a call runs on one thread (a thread hand-off costs ~50 us)
_PARALLEL_MIN = 1 << 16


def coefficients(kind: str, proj: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, b)`` of the recurrence from the projection ``(B, T, WIDTH * H)``, in PyTorch."""
    if kind == "mingru":
        k, cand = proj.chunk(2, dim=-1)
        # a = 1 - z = sigmoid(-k) (exact where z is near 1), b = z * g(candidate)
        return torch.sigmoid(-k), torch.sigmoid(k) * g(cand)
    kf, ki, cand = proj.chunk(3, dim=-1)
    f, i = torch.sigmoid(kf), torch.sigmoid(ki)
    total = f + i  # > 0: each gate is a sigmoid
    return f / total, i / total * g(cand)


@functools.cache
def _kernels() -> Any:
    """numba-compiled loops over the rows ``lo:hi`` of the batch (compiled on first use,
    cached on disk), or None without numba."""
    try:
        import numba  # heavy (LLVM): imported only when a scan first runs on the CPU
    except ImportError:  # pragma: no cover - librosa depends on numba
        return None
    # error_model="numpy": a 0/0 gives NaN as the PyTorch form would, never an exception
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")

    # The arithmetic stays in the arrays' own precision (``one`` is 1 in their dtype: a
    # Python float literal would turn float32 arithmetic into float64, 25% slower).
    @jit
    def pair(x, one):  # noqa: ANN001, ANN202 - numba signatures
        """sigmoid(x) and sigmoid(-x) from one exp, without overflow for large |x|."""
        e = math.exp(-abs(x))
        near = one / (one + e)
        far = e * near
        return (near, far) if x >= 0 else (far, near)

    @jit
    def cand(c, one):  # noqa: ANN001, ANN202 - g(c) and g'(c)
        if c >= 0:
            return c + one / (one + one), one
        s, r = pair(c, one)
        return s, s * r

    # Forward writes the gate values ``act`` (minGRU: z, g(c); minLSTM: f, i, g(c)) beside
    # the states, so the reverse-time pass needs no exp: it is a few multiply-adds per value.
    @jit
    def mingru_fwd(proj, h0, out, act, one, lo, hi):  # noqa: ANN001, ANN202
        batch, steps, hidden = out.shape
        for i in range(lo, hi):
            for t in range(steps):
                for j in range(hidden):
                    prev = h0[i, j] if t == 0 else out[i, t - 1, j]
                    z, a = pair(proj[i, t, j], one)
                    gc, _ = cand(proj[i, t, hidden + j], one)
                    act[i, t, j], act[i, t, hidden + j] = z, gc
                    out[i, t, j] = a * prev + z * gc

    @jit
    def mingru_bwd(act, h0, out, grad, gproj, gh0, one, lo, hi):  # noqa: ANN001, ANN202
        batch, steps, hidden = out.shape
        half = one / (one + one)
        for i in range(lo, hi):
            for j in range(hidden):
                gh0[i, j] = 0
            for t in range(steps - 1, -1, -1):
                for j in range(hidden):
                    prev = h0[i, j] if t == 0 else out[i, t - 1, j]
                    z, gc = act[i, t, j], act[i, t, hidden + j]
                    a = one - z
                    dgc = one if gc >= half else gc * (one - gc)  # g(c) >= 1/2 iff c >= 0
                    big_g = grad[i, t, j] + gh0[i, j]
                    gproj[i, t, j] = a * z * big_g * (gc - prev)
                    gproj[i, t, hidden + j] = big_g * z * dgc
                    gh0[i, j] = a * big_g

    @jit
    def minlstm_fwd(proj, h0, out, act, one, lo, hi):  # noqa: ANN001, ANN202
        batch, steps, hidden = out.shape
        for i in range(lo, hi):
            for t in range(steps):
                for j in range(hidden):
                    prev = h0[i, j] if t == 0 else out[i, t - 1, j]
                    f, _ = pair(proj[i, t, j], one)
                    ig, _ = pair(proj[i, t, hidden + j], one)
                    gc, _ = cand(proj[i, t, 2 * hidden + j], one)
                    act[i, t, j], act[i, t, hidden + j], act[i, t, 2 * hidden + j] = f, ig, gc
                    total = f + ig  # two divisions: 1 / total overflows when both are tiny
                    out[i, t, j] = f / total * prev + ig / total * gc

    @jit
    def minlstm_bwd(act, h0, out, grad, gproj, gh0, one, lo, hi):  # noqa: ANN001, ANN202
        batch, steps, hidden = out.shape
        half = one / (one + one)
        for i in range(lo, hi):
            for j in range(hidden):
                gh0[i, j] = 0
            for t in range(steps - 1, -1, -1):
                for j in range(hidden):
                    prev = h0[i, j] if t == 0 else out[i, t - 1, j]
                    f, ig, gc = act[i, t, j], act[i, t, hidden + j], act[i, t, 2 * hidden + j]
                    dgc = one if gc >= half else gc * (one - gc)  # g(c) >= 1/2 iff c >= 0
                    a, share = f / (f + ig), ig / (f + ig)
                    big_g = grad[i, t, j] + gh0[i, j]
                    common = big_g * (prev - gc) * a * share
                    gproj[i, t, j] = (one - f) * common
                    gproj[i, t, hidden + j] = -(one - ig) * common
                    gproj[i, t, 2 * hidden + j] = big_g * share * dgc
                    gh0[i, j] = a * big_g

    return {"mingru": (mingru_fwd, mingru_bwd), "minlstm": (minlstm_fwd, minlstm_bwd)}


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Threads for the extra row blocks (one pool per process: a forked child gets its own)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rnnlab-scan")


def _over_rows(kernel: Any, rows: int, size: int, *args: Any) -> None:
    """``kernel(*args, lo, hi)`` over blocks of rows, one per allowed thread."""
    parts = min(torch.get_num_threads(), rows) if size >= _PARALLEL_MIN else 1
    if parts <= 1:
        kernel(*args, 0, rows)
        return
    bounds = [rows * p // parts for p in range(parts + 1)]
    pool = _pool(parts - 1, os.getpid())
    futures = [pool.submit(kernel, *args, lo, hi)
               for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True)]
    kernel(*args, bounds[0], bounds[1])
    for future in futures:
        future.result()


#: 1 in each dtype the kernels take, as a numpy scalar (their arithmetic follows it)
_ONE = {torch.float32: np.float32(1), torch.float64: np.float64(1)}


class _GatedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, proj: Tensor, h0: Tensor, kind: str) -> Tensor:
        fwd, _ = _kernels()[kind]
        out = torch.empty(h0.shape[0], proj.shape[1], h0.shape[1], dtype=proj.dtype)
        act = torch.empty_like(proj)
        _over_rows(fwd, out.shape[0], out.numel(), _np(proj), _np(h0), out.numpy(),
                   act.numpy(), _ONE[proj.dtype])
        ctx.kind = kind
        ctx.save_for_backward(act, h0, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        act, h0, out = ctx.saved_tensors
        _, bwd = _kernels()[ctx.kind]
        gproj, gh0 = torch.empty_like(act), torch.empty_like(h0)
        _over_rows(bwd, out.shape[0], out.numel(), _np(act), _np(h0), _np(out),
                   _np(grad.to(out.dtype)), gproj.numpy(), gh0.numpy(), _ONE[act.dtype])
        return gproj, gh0, None


def gated_scan(kind: str, proj: Tensor, h0: Tensor | None = None) -> Tensor:
    """The states of minGRU (``kind="mingru"``) or minLSTM from the input projection
    ``(B, T, WIDTH[kind] * H)``: ``(B, T, H)``. One compiled pass each way on CPU
    float32/float64; elsewhere :func:`coefficients` and :func:`.scan.linear_scan`. A half
    precision projection on the CPU (bf16 autocast) is scanned in float32: the matrix
    products keep their speed, and the state is not rounded to 8 bits at every step."""
    hidden = proj.shape[-1] // WIDTH[kind]
    if proj.device.type == "cpu" and proj.dtype in (torch.bfloat16, torch.float16):
        proj = proj.float()
    if h0 is None:
        h0 = proj.new_zeros(proj.shape[0], hidden)
    h0 = h0.to(proj.dtype)
    if _compiled(proj, h0) is None or _kernels() is None:
        a, b = coefficients(kind, proj)
        return linear_scan(a, b, h0)
    return _GatedScan.apply(proj.contiguous(), h0.contiguous(), kind)
