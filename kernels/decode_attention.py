"""Single-query attention over a KV cache: the attention of one streaming LM step.

Each of ``B`` sessions has one new query per head and a cache of ``C`` key/value slots (a
ring buffer: which slots are visible is given by ``valid``, not by position). Grouped-query
attention: query head ``h`` reads kv head ``h // (H // Hkv)``.

The reference is plain PyTorch; the Triton version (``decode_attention_triton.py``, split-K
"flash decoding") is picked by :mod:`~tokenlm.kernels.dispatch` on CUDA tensors.
"""

from __future__ import annotations

import torch

from .dispatch import triton_impl

__all__ = ["decode_attention", "decode_attention_ref"]


def _check(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, valid: torch.Tensor) -> None:
    b, h, hd = q.shape
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must both be [B, Hkv, C, hd], got {tuple(k_cache.shape)} "
                         f"and {tuple(v_cache.shape)}")
    bk, hkv, c, hdk = k_cache.shape
    if bk != b or hdk != hd or h % hkv:
        raise ValueError(f"q {tuple(q.shape)} does not match caches {tuple(k_cache.shape)} "
                         "(same B and head size; H a multiple of Hkv)")
    if valid.shape != (b, c):
        raise ValueError(f"valid must be [B, C] = [{b}, {c}], got {tuple(valid.shape)}")


def decode_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, valid: torch.Tensor,
                         scale: float | None = None) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` over the valid slots.

    q ``[B, H, hd]``; k_cache, v_cache ``[B, Hkv, C, hd]`` with ``H % Hkv == 0``; valid ``[B, C]``
    bool (True: the slot may be attended to). ``scale`` defaults to ``1 / sqrt(hd)``. Returns
    ``[B, H, hd]`` in q's dtype, computed in fp32. Invalid slots never contribute, even if
    they hold non-finite values; a row with no valid slot returns zeros.
    """
    _check(q, k_cache, v_cache, valid)
    b, h, hd = q.shape
    hkv = k_cache.shape[1]
    scale = hd**-0.5 if scale is None else scale
    ok = valid.bool()[:, None, None, :]  # [B, 1, 1, C]
    qf = q.float().reshape(b, hkv, h // hkv, hd)
    s = torch.einsum("bngd,bncd->bngc", qf, k_cache.float()) * scale
    p = torch.softmax(s.masked_fill(~ok, float("-inf")), dim=-1).masked_fill(~ok, 0.0)  # all-masked: 0
    v = v_cache.float().masked_fill(~valid.bool()[:, None, :, None], 0.0)
    return torch.einsum("bngc,bncd->bngd", p, v).reshape(b, h, hd).to(q.dtype)


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, valid: torch.Tensor,
                     scale: float | None = None) -> torch.Tensor:
    """See :func:`decode_attention_ref`. Triton (split-K, no host sync) on CUDA tensors."""
    fn = triton_impl("decode_attention_triton", "decode_attention", q, k_cache, v_cache, valid)
    if fn is None:
        return decode_attention_ref(q, k_cache, v_cache, valid, scale)
    _check(q, k_cache, v_cache, valid)
    return fn(q, k_cache, v_cache, valid, scale)
