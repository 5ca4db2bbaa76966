"""Triton version of :func:`~tokenlm.kernels.sampling.sample_tokens` (same signature and semantics).

One program per row streams the row's logits in ``BLOCK_V`` blocks, several times, with no
sort and no host sync:

1. max and first argmax of the logits (the greedy answer, and ``max z`` for the softmax);
2. top-k (when on): the k-th best value is found by a 16-way search over the
   order-preserving integer keys of the fp32 values (8 passes, each counting the keys above
   16 candidate cuts at once); ties at the cut keep the lowest indices (a running count of
   the tied tokens, carried from block to block);
3. top-p (when on): the kept mass ``W``, then the same search (8 passes, summing weights) for
   the highest value ``t`` whose kept tokens at or above it hold ``>= top_p * W``; tokens at
   ``t`` are kept while the mass before them (better values, then tied lower indices) is
   below it;
4. the kept mass ``W2``, then the inverse-CDF pass in vocabulary order (block cumulative sums
   plus a running total) picks the token for ``uniform * W2``.

Greedy rows stop after pass 1, rows without top-k/top-p skip 2 and 3. The result equals the
reference except where float rounding decides an exact boundary (sums are taken in a
different order), which random inputs practically never hit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import dispatch
from .sampling import TOP_P_MIN, sampling_rows

__all__ = ["sample_tokens"]

_LOWEST = -(2**31)  # smallest key of any fp32 value


@triton.jit
def _key(z):
    """int64 key with the order of fp32 ``z`` (``-0.0`` and ``+0.0`` equal)."""
    bits = z.to(tl.int32, bitcast=True)
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return tl.where(z == 0.0, 0, key).to(tl.int64)


@triton.jit
def _keep_k(key, ok, tk, need, carry):
    """top-k membership of a block: keys above the cut ``tk``, and the first ``need`` tokens
    (in index order, ``carry`` of them in earlier blocks) whose key equals it."""
    tie = ((key == tk) & ok).to(tl.int64)
    before = carry + tl.cumsum(tie, axis=0) - tie
    kept = ok & ((key > tk) | ((tie != 0) & (before < need)))
    return kept, carry + tl.sum(tie, axis=0)


@triton.jit
def _keep_p(key, w, kept, tp, s_gt, target, carry):
    """top-p membership of a block: kept keys above the cut ``tp``, and tokens at the cut whose
    better-ranked mass (``s_gt`` above the cut, ``carry`` + earlier ties at it) is below ``target``."""
    tie = kept & (key == tp)
    wt = tl.where(tie, w, 0.0)
    before = s_gt + carry + (tl.cumsum(wt, axis=0) - wt)
    keep = kept & ((key > tp) | (tie & (before < target)))
    return keep, carry + tl.sum(wt, axis=0)


@triton.jit
def _cut(base, s_lv, inv_t, zmax, goal, tk, need, V: tl.constexpr, BLOCK_V: tl.constexpr,
         MASS: tl.constexpr, LOWEST: tl.constexpr):
    """The largest key ``t`` with ``#{key >= t} >= goal`` (``MASS`` False) or with the top-k kept
    weight of ``{key >= t}`` ``>= goal`` (``MASS`` True): a 16-way search over the 2^32 keys,
    8 passes over the row, each comparing every key with 16 candidate cuts at once."""
    ways = tl.arange(0, 16).to(tl.int64)
    lo = tl.full([], LOWEST, tl.int64)  # invariant: lo satisfies the condition
    step = tl.full([], 2**28, tl.int64)
    offs = tl.arange(0, BLOCK_V)
    for _ in range(8):
        cand = lo + ways * step
        if MASS:
            acc = tl.zeros([16], tl.float32)
        else:
            acc = tl.zeros([16], tl.int64)
        ck = tl.full([], 0, tl.int64)
        for v0 in range(0, V, BLOCK_V):
            idx = v0 + offs
            ok = idx < V
            z = tl.load(base + idx * s_lv, mask=ok, other=0.0).to(tl.float32) * inv_t
            key = _key(z)
            above = key[:, None] >= cand[None, :]  # [BLOCK_V, 16]
            if MASS:
                kept, ck = _keep_k(key, ok, tk, need, ck)
                w = tl.where(kept, tl.exp(z - zmax), 0.0)
                acc += tl.sum(tl.where(above, w[:, None], 0.0), axis=0)
            else:
                acc += tl.sum((above & ok[:, None]).to(tl.int64), axis=0)
        n_ok = tl.maximum(tl.sum((acc >= goal).to(tl.int64), axis=0), 1)  # >= 1 but for rounding
        lo = lo + (n_ok - 1) * step
        step = step // 16
    return lo


@triton.jit
def _sample_kernel(
    logits_ptr, inv_t_ptr, top_k_ptr, top_p_ptr, u_ptr, out_ptr,
    s_lb, s_lv,
    V: tl.constexpr, BLOCK_V: tl.constexpr, TOP_P_FLOOR: tl.constexpr,
    LOWEST: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * s_lb
    offs = tl.arange(0, BLOCK_V)
    inv_t = tl.load(inv_t_ptr + row)

    # 1. max and first argmax
    best = tl.full([], float("-inf"), tl.float32)
    best_i = tl.full([], 0, tl.int32)
    for v0 in range(0, V, BLOCK_V):
        idx = v0 + offs
        x = tl.load(base + idx * s_lv, mask=idx < V, other=float("-inf")).to(tl.float32)
        b_max, b_arg = tl.max(x, axis=0, return_indices=True, return_indices_tie_break_left=True)
        better = b_max > best
        best_i = tl.where(better, b_arg + v0, best_i)
        best = tl.where(better, b_max, best)
    tok = best_i.to(tl.int64)

    if (inv_t > 0.0) & (best > float("-inf")):
        zmax = best * inv_t  # rounding is monotonic: the max of z is z of the max
        k = tl.load(top_k_ptr + row)
        p = tl.load(top_p_ptr + row)

        # 2. top-k cut: the largest key t with #{key >= t} >= k
        tk = tl.full([], LOWEST - 1, tl.int64)  # off: every key is above the cut
        need = tl.full([], 0, tl.int64)
        if (k > 0) & (k < V):
            tk = _cut(base, s_lv, inv_t, zmax, k, tk, need, V, BLOCK_V, False, LOWEST)
            n_above = tl.full([], 0, tl.int64)
            for v0 in range(0, V, BLOCK_V):
                idx = v0 + offs
                ok = idx < V
                x = tl.load(base + idx * s_lv, mask=ok, other=0.0).to(tl.float32)
                n_above += tl.sum(((_key(x * inv_t) > tk) & ok).to(tl.int64), axis=0)
            need = k - n_above

        # 3. top-p cut: the largest key t whose kept tokens at or above it hold >= top_p * W
        tp = tl.full([], LOWEST - 1, tl.int64)  # off
        s_gt = tl.full([], 0.0, tl.float32)
        target = tl.full([], 0.0, tl.float32)
        if p < 1.0:
            total = tl.full([], 0.0, tl.float32)
            ck = tl.full([], 0, tl.int64)
            for v0 in range(0, V, BLOCK_V):
                idx = v0 + offs
                ok = idx < V
                z = tl.load(base + idx * s_lv, mask=ok, other=0.0).to(tl.float32) * inv_t
                kept, ck = _keep_k(_key(z), ok, tk, need, ck)
                total += tl.sum(tl.where(kept, tl.exp(z - zmax), 0.0), axis=0)
            target = tl.maximum(p, TOP_P_FLOOR) * total
            tp = _cut(base, s_lv, inv_t, zmax, target, tk, need, V, BLOCK_V, True, LOWEST)
            ck = tl.full([], 0, tl.int64)
            for v0 in range(0, V, BLOCK_V):
                idx = v0 + offs
                ok = idx < V
                z = tl.load(base + idx * s_lv, mask=ok, other=0.0).to(tl.float32) * inv_t
                key = _key(z)
                kept, ck = _keep_k(key, ok, tk, need, ck)
                s_gt += tl.sum(tl.where(kept & (key > tp), tl.exp(z - zmax), 0.0), axis=0)

        # 4. kept mass, then inverse CDF in vocabulary order
        mass = tl.full([], 0.0, tl.float32)
        ck = tl.full([], 0, tl.int64)
        cp = tl.full([], 0.0, tl.float32)
        for v0 in range(0, V, BLOCK_V):
            idx = v0 + offs
            ok = idx < V
            z = tl.load(base + idx * s_lv, mask=ok, other=0.0).to(tl.float32) * inv_t
            key = _key(z)
            w = tl.exp(z - zmax)
            kept, ck = _keep_k(key, ok, tk, need, ck)
            kept, cp = _keep_p(key, w, kept, tp, s_gt, target, cp)
            mass += tl.sum(tl.where(kept, w, 0.0), axis=0)
        thr = tl.load(u_ptr + row) * mass
        first = tl.full([], V, tl.int32)
        last = tl.full([], -1, tl.int32)
        run = tl.full([], 0.0, tl.float32)
        ck = tl.full([], 0, tl.int64)
        cp = tl.full([], 0.0, tl.float32)
        for v0 in range(0, V, BLOCK_V):
            idx = v0 + offs
            ok = idx < V
            z = tl.load(base + idx * s_lv, mask=ok, other=0.0).to(tl.float32) * inv_t
            key = _key(z)
            w = tl.exp(z - zmax)
            kept, ck = _keep_k(key, ok, tk, need, ck)
            kept, cp = _keep_p(key, w, kept, tp, s_gt, target, cp)
            wk = tl.where(kept, w, 0.0)
            live = wk > 0.0
            hit = live & ((run + tl.cumsum(wk, axis=0)) > thr)
            first = tl.minimum(first, tl.min(tl.where(hit, idx, V), axis=0))
            last = tl.maximum(last, tl.max(tl.where(live, idx, -1), axis=0))
            run += tl.sum(wk, axis=0)
        tok = tl.where(first < V, first, last).to(tl.int64)

    tl.store(out_ptr + row, tok)


def sample_tokens(logits: torch.Tensor, temperature=0.0, top_k=0, top_p=1.0,
                  uniform: torch.Tensor | None = None, generator: torch.Generator | None = None, *,
                  block_v: int | None = None) -> torch.Tensor:
    """Tokens ``[B]`` int64 from ``logits [B, V]``; see :mod:`tokenlm.kernels.sampling`.

    The vocabulary size is a compile-time constant (one compilation per stream vocabulary).
    ``block_v``: tuning/tests only."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, V], got {tuple(logits.shape)}")
    b, v = logits.shape
    inv_t, top_k, top_p, u = sampling_rows(logits, temperature, top_k, top_p, uniform, generator)
    out = dispatch.empty((b,), torch.long, logits.device)
    if b == 0:
        return out
    cap = 1024 if logits.is_cuda else 4096  # [BLOCK_V, 16] tiles in _cut
    bv = block_v or min(triton.next_power_of_2(v), cap)
    _sample_kernel[(b,)](
        logits, inv_t, top_k, top_p, u, out, *logits.stride(),
        V=v, BLOCK_V=bv, TOP_P_FLOOR=TOP_P_MIN, LOWEST=_LOWEST,
        num_warps=4 if bv <= 256 else 8,
    )
    return out
