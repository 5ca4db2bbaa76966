"""Triton versions of the codebook kernels in :mod:`~tokenlm.kernels.codebook` (same signatures).

- :func:`codebook_lookup_sum` / :func:`embedding_sum`: one program per (position block,
  feature block, batch item) gathers the selected rows of every stage's table and sums
  them in fp32 registers; one kernel serves both (codebooks are tables at a fixed stride,
  packed embedding tables are tables at row offsets; negative ids add nothing).
- :func:`rvq_encode`: one program per block of ``BLOCK_N`` vectors keeps their residuals in
  registers through all Q stages. Each stage streams the codebook in ``BLOCK_K`` blocks,
  computes ``|e|^2 - 2 r.e`` with an fp32 ``tl.dot`` (``input_precision="ieee"`` by default:
  TF32 would flip nearest-codeword decisions; ``|e|^2`` comes precomputed) and keeps a running (min, argmin) per vector; the
  ``[N, K]`` distance matrix never exists in memory. Ties go to the lowest index, as in
  ``torch.argmin``.

Stage counts and codebook sizes are compile-time constants (one compilation per model);
loops run over constants only, which also keeps the kernels runnable in Triton's CPU
interpreter with numpy >= 2.4 (a loop bounded by a runtime scalar fails there).

Imported lazily by the dispatcher, only when a Triton kernel is about to run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import dispatch
from .codebook import EmbeddingTables

__all__ = ["codebook_lookup_sum", "embedding_sum", "rvq_encode"]


def _np2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


@triton.jit
def _lookup_sum_kernel(
    ids_ptr, tab_ptr, off_ptr, out_ptr,
    F, D,
    s_ib, s_iq, s_if,  # ids [B, Q, F]
    s_tq, s_tk, s_td,  # tables: stage stride, row stride, feature stride
    s_ob, s_od, s_of,  # out [B, D, F]
    Q: tl.constexpr, HAS_OFFSETS: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_f = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    f_ok = f < F
    d_ok = d < D
    acc = tl.zeros([BLOCK_D, BLOCK_F], dtype=tl.float32)
    for q in range(Q):
        idx = tl.load(ids_ptr + b * s_ib + q * s_iq + f * s_if, mask=f_ok, other=-1).to(tl.int64)
        row = idx
        if HAS_OFFSETS:
            row = row + tl.load(off_ptr + q)
        base = tab_ptr + q * s_tq
        e = tl.load(base + row[None, :] * s_tk + d[:, None] * s_td,
                    mask=d_ok[:, None] & (f_ok & (idx >= 0))[None, :], other=0.0)
        acc += e.to(tl.float32)
    out = out_ptr + b * s_ob + d[:, None] * s_od + f[None, :] * s_of
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=d_ok[:, None] & f_ok[None, :])


def _lookup_blocks(f: int, d: int, device: torch.device) -> tuple[int, int]:
    if device.type == "cuda":
        return min(_np2(f), 64), min(_np2(d), 64)
    return min(_np2(f), 256), min(_np2(d), 256)  # interpreter: few, large programs


def _lookup_sum(ids, table, offsets, s_tq, out, out_strides, block_f=None, block_d=None, num_warps=4):
    b, q, f = ids.shape
    d = table.shape[-1]
    bf, bd = _lookup_blocks(f, d, ids.device)
    bf, bd = block_f or bf, block_d or bd
    grid = (triton.cdiv(f, bf), triton.cdiv(d, bd), b)
    _lookup_sum_kernel[grid](
        ids, table, offsets if offsets is not None else ids, out,
        f, d,
        *ids.stride(), s_tq, table.stride(-2), table.stride(-1), *out_strides,
        Q=q, HAS_OFFSETS=offsets is not None, BLOCK_F=bf, BLOCK_D=bd, num_warps=num_warps,
    )
    return out


def codebook_lookup_sum(codes: torch.Tensor, codebooks: torch.Tensor, *, block_f: int | None = None,
                        block_d: int | None = None) -> torch.Tensor:
    """codes ``[B, Q, F]`` (int32/int64, in ``[0, K)``), codebooks ``[Q', K, D]`` -> ``[B, D, F]`` fp32.

    Any strides; codebooks of any float dtype (summed in fp32)."""
    b, q, f = codes.shape
    if q > codebooks.shape[0]:
        raise ValueError(f"{q} code stages but only {codebooks.shape[0]} codebooks")
    d = codebooks.shape[-1]
    out = dispatch.empty((b, d, f), torch.float32, codes.device)
    if out.numel() == 0:
        return out.zero_()
    return _lookup_sum(codes, codebooks, None, codebooks.stride(0), out, out.stride(), block_f, block_d)


def embedding_sum(ids: torch.Tensor, tables: EmbeddingTables, out_dtype: torch.dtype | None = None, *,
                  block_f: int | None = None, block_d: int | None = None) -> torch.Tensor:
    """ids ``[B, S, T]`` -> ``[B, T, D]``: sum of each stream's embedding (negative id: zero vector).

    ``tables`` is packed (:class:`~tokenlm.kernels.codebook.EmbeddingTables`; the public entry
    point packs lists and stacked tensors)."""
    w, offsets = tables
    b, s, t = ids.shape
    if offsets.numel() != s:
        raise ValueError(f"{s} id streams but {offsets.numel()} tables")
    d = w.shape[-1]
    out = dispatch.empty((b, t, d), out_dtype or w.dtype, ids.device)
    if out.numel() == 0:
        return out.zero_()
    # the kernel writes [B, D, F]; here F is T and the output is [B, T, D] in memory
    return _lookup_sum(ids, w, offsets.to(ids.device), 0, out, (out.stride(0), out.stride(2), out.stride(1)),
                       block_f, block_d)


@triton.jit
def _rvq_encode_kernel(
    x_ptr, cb_ptr, esq_ptr, codes_ptr,
    N, F, D,
    s_xb, s_xd, s_xf,  # x [B, D, F]
    s_cq, s_ck, s_cd,  # codebooks [Q, K, D]
    s_ob, s_oq, s_of,  # codes [B, Q, F]
    Q: tl.constexpr, K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    bi = (n // F).to(tl.int64)
    fi = (n % F).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    kk = tl.arange(0, BLOCK_K)
    # residuals of this block's vectors, fp32, for the whole search
    r = tl.load(x_ptr + bi[:, None] * s_xb + d[None, :] * s_xd + fi[:, None] * s_xf,
                mask=n_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    for q in range(Q):
        cb = cb_ptr + q * s_cq
        best = tl.full([BLOCK_N], float("inf"), tl.float32)
        best_i = tl.zeros([BLOCK_N], tl.int32)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + kk
            k_ok = k < K
            e = tl.load(cb + k[:, None] * s_ck + d[None, :] * s_cd,
                        mask=k_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # [BLOCK_K, BLOCK_D]
            e_sq = tl.load(esq_ptr + q * K + k, mask=k_ok, other=0.0)
            dots = tl.dot(r, tl.trans(e), input_precision=DOT_PRECISION)  # [BLOCK_N, BLOCK_K]
            dist = e_sq[None, :] - 2.0 * dots
            dist = tl.where(k_ok[None, :], dist, float("inf"))
            blk_min, blk_arg = tl.min(dist, axis=1, return_indices=True, return_indices_tie_break_left=True)
            better = blk_min < best  # strict: an earlier block wins exact ties
            best = tl.where(better, blk_min, best)
            best_i = tl.where(better, blk_arg + k0, best_i)
        chosen = tl.load(cb + best_i.to(tl.int64)[:, None] * s_ck + d[None, :] * s_cd,
                         mask=n_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        r = r - chosen
        tl.store(codes_ptr + bi * s_ob + q * s_oq + fi * s_of, best_i.to(tl.int64), mask=n_ok)


def _encode_config(n: int, k: int, d: int, device: torch.device, precision: str) -> tuple[int, int, int, int, int]:
    """(BLOCK_N, BLOCK_K, BLOCK_D, num_warps, num_stages). On a GPU the fp32 ("ieee") dot is
    FMA code whose operands live in registers: 32 x 32 tiles keep it free of spills at
    D = 128 (checked with ptxas for sm_90); the tensor-core precisions take 64 x 64 tiles."""
    bd = max(triton.next_power_of_2(d), 16)  # tl.dot needs every block dim >= 16
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        if precision == "ieee":
            bn = 32 if n >= 32 * 2 * sms and bd <= 128 else 16
            return bn, 32, bd, 4, 2
        return (64 if n >= 64 * sms else 32), 64, bd, 8, 3
    return max(16, min(_np2(n), 128)), max(16, min(_np2(k), 256)), bd, 4, 1  # interpreter: few programs


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor, *, precision: str = "ieee", block_n: int | None = None,
               block_k: int | None = None, num_warps: int | None = None) -> torch.Tensor:
    """x ``[B, D, F]``, codebooks ``[Q, K, D]`` -> codes ``[B, Q, F]`` int64 (greedy residual search).

    Any strides and float dtypes (computed in fp32). ``precision`` is the GPU dot's input
    precision: ``"ieee"`` (fp32, the default, what the reference computes), ``"tf32x3"``
    (tensor cores, close to fp32: a near-tie may go the other way) or ``"tf32"`` (fast but
    10-bit mantissas: flips nearest-codeword choices; benchmarks only). The interpreter always
    computes in fp32. ``block_n``/``block_k``/``num_warps``: tuning/tests only."""
    b, d, f = x.shape
    q, k, dc = codebooks.shape
    if dc != d:
        raise ValueError(f"x has {d} channels but codewords have {dc}")
    n = b * f
    codes = dispatch.empty((b, q, f), torch.long, x.device)
    if codes.numel() == 0:
        return codes
    bn, bk, bd, nw, ns = _encode_config(n, k, d, x.device, precision)
    bn, bk, nw = block_n or bn, block_k or bk, num_warps or nw
    cb = codebooks.float()
    e_sq = (cb * cb).sum(-1).contiguous()  # [Q, K], as the reference computes it
    _rvq_encode_kernel[(triton.cdiv(n, bn),)](
        x, codebooks, e_sq, codes,
        n, f, d,
        *x.stride(), *codebooks.stride(), *codes.stride(),
        Q=q, K=k, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd, DOT_PRECISION=precision, num_warps=nw, num_stages=ns,
    )
    return codes
