"""Codebook kernels: lookup-and-sum (decode) and greedy residual search (encode).

References in plain PyTorch; Triton versions plug in through ``dispatch``.
All codebook math is fp32 whatever the caller's dtype: low-precision distances flip
nearest-codeword decisions.
"""

from __future__ import annotations

import torch

from .dispatch import use_triton


def codebook_lookup_sum_ref(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Sum of the selected codewords: codes ``[B, Q, F]``, codebooks ``[Q', K, D]`` (Q <= Q') -> ``[B, D, F]``."""
    q = codes.shape[1]
    cb = codebooks[:q].float()  # [Q, K, D]
    # gather per codebook: [Q, B*F, D]
    idx = codes.transpose(0, 1).reshape(q, -1)  # [Q, B*F]
    picked = torch.gather(cb, 1, idx[..., None].expand(-1, -1, cb.shape[-1]))
    out = picked.sum(0).view(codes.shape[0], codes.shape[2], -1)  # [B, F, D]
    return out.transpose(1, 2)


def rvq_encode_ref(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Greedy residual quantization: x ``[B, D, F]``, codebooks ``[Q, K, D]`` -> codes ``[B, Q, F]``.

    Stage q picks the codeword nearest (L2) to the residual left by stages < q, so the
    first n codes are the encoding with n codebooks.
    """
    b, d, f = x.shape
    residual = x.float().transpose(1, 2).reshape(-1, d)  # [N, D]
    cb = codebooks.float()
    out = []
    for q in range(cb.shape[0]):
        e = cb[q]  # [K, D]
        # |r - e|^2 = |r|^2 - 2 r.e + |e|^2; |r|^2 is the same for every codeword
        dist = (e * e).sum(-1) - 2.0 * residual @ e.T  # [N, K]
        idx = dist.argmin(-1)  # [N]
        residual = residual - e[idx]
        out.append(idx)
    return torch.stack(out, 0).view(-1, b, f).transpose(0, 1)  # [B, Q, F]


# Public entry points. The Triton versions are not written yet (see kernels/README.md):
# until they are, dispatch has only the reference to pick.
TRITON_IMPLS: dict = {}


def codebook_lookup_sum(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    fn = TRITON_IMPLS.get("codebook_lookup_sum") if use_triton(codes, codebooks) else None
    return (fn or codebook_lookup_sum_ref)(codes, codebooks)


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    fn = TRITON_IMPLS.get("rvq_encode") if use_triton(x, codebooks) else None
    return (fn or rvq_encode_ref)(x, codebooks)
