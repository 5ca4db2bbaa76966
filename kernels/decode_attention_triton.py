"""Triton version of :func:`~tokenlm.kernels.decode_attention.decode_attention` (same signature).

Split-K ("flash decoding"): the cache axis ``C`` is cut into ``NUM_SPLITS`` chunks so that
``B * Hkv * NUM_SPLITS`` programs fill the GPU even for one session. A program owns one
(batch item, kv head, chunk): it loads each key/value block once for all ``H / Hkv`` query
heads that share it (grouped-query attention), skips the loads of invalid slots, and keeps an
online softmax (running max ``m``, sum ``l`` and weighted values) in fp32 registers, in base 2
with ``scale * log2(e)`` folded into the query. With one chunk it normalises and writes the
output directly; otherwise a second small kernel merges the chunks' ``(m, l, acc)``. Rows
with no valid slot get zeros, never NaN.

Scores use broadcast multiply-and-sum rather than ``tl.dot``: the query side has only
``H / Hkv`` rows (tensor-core tiles need 16), the step is memory-bound anyway, and the
math stays fp32 whatever the cache dtype.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from . import dispatch

__all__ = ["decode_attention"]


@triton.jit
def _decode_attn_kernel(
    q_ptr, k_ptr, v_ptr, valid_ptr, out_ptr, part_o_ptr, part_m_ptr, part_l_ptr,
    C, HD, HKV, G, qk_scale,
    s_qb, s_qh, s_qd,
    s_kb, s_kh, s_kc, s_kd,
    s_vb, s_vh, s_vc, s_vd,
    s_mb, s_mc,
    s_ob, s_oh, s_od,
    NUM_SPLITS: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)  # b * HKV + kv head
    split = tl.program_id(1)
    b = (pid // HKV).to(tl.int64)
    hk = pid % HKV
    g = tl.arange(0, BLOCK_G)
    g_ok = g < G
    h = hk * G + g
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HD
    gd_ok = g_ok[:, None] & d_ok[None, :]
    q = tl.load(q_ptr + b * s_qb + h[:, None] * s_qh + d[None, :] * s_qd, mask=gd_ok, other=0.0)
    q = q.to(tl.float32) * qk_scale  # [BLOCK_G, BLOCK_D], scores come out in log2 units

    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    k_base = k_ptr + b * s_kb + hk * s_kh
    v_base = v_ptr + b * s_vb + hk * s_vh
    for c0 in range(0, CHUNK, BLOCK_C):
        c = split * CHUNK + c0 + tl.arange(0, BLOCK_C)
        ok = c < C
        ok = ok & (tl.load(valid_ptr + b * s_mb + c * s_mc, mask=ok, other=0) != 0)
        cd_ok = ok[:, None] & d_ok[None, :]
        kt = tl.load(k_base + c[:, None] * s_kc + d[None, :] * s_kd, mask=cd_ok, other=0.0).to(tl.float32)
        s = tl.sum(q[:, None, :] * kt[None, :, :], axis=2)  # [BLOCK_G, BLOCK_C]
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing valid yet: avoid -inf - -inf
        alpha = tl.math.exp2(m - m_use)
        p = tl.math.exp2(s - m_use[:, None])
        denom = denom * alpha + tl.sum(p, axis=1)
        vt = tl.load(v_base + c[:, None] * s_vc + d[None, :] * s_vd, mask=cd_ok, other=0.0).to(tl.float32)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * vt[None, :, :], axis=1)
        m = m_new

    if NUM_SPLITS == 1:
        o = acc / tl.where(denom > 0.0, denom, 1.0)[:, None]  # no valid slot: acc is 0, so is the output
        tl.store(out_ptr + b * s_ob + h[:, None] * s_oh + d[None, :] * s_od,
                 o.to(out_ptr.dtype.element_ty), mask=gd_ok)
    else:
        row = (pid * G + g).to(tl.int64) * NUM_SPLITS + split  # (b * H + h) * NUM_SPLITS + split
        tl.store(part_o_ptr + row[:, None] * BLOCK_D + d[None, :], acc, mask=gd_ok)
        tl.store(part_m_ptr + row, m, mask=g_ok)
        tl.store(part_l_ptr + row, denom, mask=g_ok)


@triton.jit
def _decode_combine_kernel(
    part_o_ptr, part_m_ptr, part_l_ptr, out_ptr,
    H, HD,
    s_ob, s_oh, s_od,
    NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # b * H + h
    b = row // H
    h = row % H
    s = tl.arange(0, BLOCK_S)
    s_ok = s < NUM_SPLITS
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HD
    m = tl.load(part_m_ptr + row * NUM_SPLITS + s, mask=s_ok, other=float("-inf"))
    denom = tl.load(part_l_ptr + row * NUM_SPLITS + s, mask=s_ok, other=0.0)
    m_all = tl.max(m, axis=0)
    w = tl.math.exp2(m - tl.where(m_all == float("-inf"), 0.0, m_all))  # empty chunks weigh 0
    total = tl.sum(denom * w, axis=0)
    acc = tl.load(part_o_ptr + (row * NUM_SPLITS + s[:, None]) * BLOCK_D + d[None, :],
                  mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    o = tl.sum(acc * w[:, None], axis=0) / tl.where(total > 0.0, total, 1.0)
    tl.store(out_ptr + b * s_ob + h * s_oh + d * s_od, o.to(out_ptr.dtype.element_ty), mask=d_ok)


def _plan(b: int, hkv: int, g: int, c: int, hd: int, device: torch.device,
          block_c: int | None, num_splits: int | None) -> tuple[int, int, int, int]:
    """(BLOCK_G, BLOCK_C, CHUNK, NUM_SPLITS) for this problem."""
    bg = triton.next_power_of_2(g)
    bd = triton.next_power_of_2(hd)
    cuda = device.type == "cuda"
    if block_c is None:
        # the [BLOCK_G, BLOCK_C, BLOCK_D] product lives in registers on a GPU
        budget = 4096 if cuda else 1 << 16  # 8192 reaches ~250 registers (ptxas, sm_90)
        block_c = max(16, min(budget // (bg * bd), 128 if cuda else 512, triton.next_power_of_2(c)))
    n_blocks = triton.cdiv(c, block_c)
    if num_splits is None:
        if cuda:
            target = 2 * torch.cuda.get_device_properties(device).multi_processor_count
            num_splits = max(1, triton.cdiv(target, b * hkv))
        else:
            num_splits = 1  # the interpreter runs programs one after the other
    num_splits = max(1, min(num_splits, n_blocks))
    chunk = triton.cdiv(n_blocks, num_splits) * block_c
    return bg, block_c, chunk, triton.cdiv(c, chunk)


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, valid: torch.Tensor,
                     scale: float | None = None, *, block_c: int | None = None,
                     num_splits: int | None = None, num_warps: int = 4) -> torch.Tensor:
    """q ``[B, H, hd]``, k_cache/v_cache ``[B, Hkv, C, hd]``, valid ``[B, C]`` -> ``[B, H, hd]`` (q's dtype).

    Any strides and float dtypes (math in fp32). ``block_c``/``num_splits``: tuning/tests only
    (defaults: enough chunks for two programs per SM on a GPU, one chunk in the interpreter)."""
    b, h, hd = q.shape
    hkv, c = k_cache.shape[1], k_cache.shape[2]
    g = h // hkv
    out = dispatch.empty((b, h, hd), q.dtype, q.device)
    if out.numel() == 0:
        return out
    if c == 0:
        return out.zero_()
    scale = hd**-0.5 if scale is None else float(scale)
    mask = valid.view(torch.uint8) if valid.dtype == torch.bool else valid.ne(0).view(torch.uint8)
    bg, bc, chunk, splits = _plan(b, hkv, g, c, hd, q.device, block_c, num_splits)
    bd = triton.next_power_of_2(hd)
    if splits > 1:
        part_o = dispatch.empty((b * h, splits, bd), torch.float32, q.device)
        part_m = dispatch.empty((b * h, splits), torch.float32, q.device)
        part_l = dispatch.empty((b * h, splits), torch.float32, q.device)
    else:
        part_o = part_m = part_l = out  # unused
    _decode_attn_kernel[(b * hkv, splits)](
        q, k_cache, v_cache, mask, out, part_o, part_m, part_l,
        c, hd, hkv, g, scale * math.log2(math.e),
        *q.stride(), *k_cache.stride(), *v_cache.stride(), *mask.stride(), *out.stride(),
        NUM_SPLITS=splits, CHUNK=chunk, BLOCK_G=bg, BLOCK_C=bc, BLOCK_D=bd, num_warps=num_warps,
    )
    if splits > 1:
        _decode_combine_kernel[(b * h,)](
            part_o, part_m, part_l, out, h, hd, *out.stride(),
            NUM_SPLITS=splits, BLOCK_S=triton.next_power_of_2(splits), BLOCK_D=bd, num_warps=num_warps,
        )
    return out
