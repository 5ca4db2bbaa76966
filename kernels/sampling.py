"""Token sampling for a batch of sessions, each with its own settings, without a host sync.

Semantics (the reference :func:`sample_tokens_ref` is the definition; the Triton version
matches it, up to float rounding at exact decision boundaries), per row ``b``:

1. **Greedy** when ``temperature[b] <= 0``: the index of the largest logit (the lowest such
   index on ties, like ``torch.argmax``). A row whose logits are all ``-inf`` is greedy too.
2. Otherwise ``z = logits * (1 / temperature)`` in fp32 and ``w = exp(z - max z)``. Tokens are
   **ranked** by descending ``z``, equal values by ascending index.
3. **top-k** (``0 < top_k[b] < V``; else off): keep the ``top_k`` best-ranked tokens — exactly
   ``top_k``, ties at the cut broken by index (unlike a ``z >= kth value`` threshold).
4. **top-p** (``top_p[b] < 1``; else off): of the tokens top-k kept, keep those whose
   better-ranked kept tokens hold less than ``top_p`` of their mass: ``before(t) < top_p * W``
   with ``W`` the kept mass. That is the smallest best-ranked set holding ``>= top_p``; the
   best token is always kept (``top_p <= 0`` is clamped to ``1e-30``: only the best token).
5. **Inverse CDF in vocabulary order**: with ``c(t)`` the cumulative kept weight over indices
   ``<= t`` and ``W2`` the total kept weight, the token is the lowest kept index with
   ``w(t) > 0`` and ``c(t) > uniform[b] * W2`` (the last such token if rounding leaves none).
   Any order gives the same distribution; vocabulary order needs no sort.

``uniform [B]`` holds the caller's random numbers in ``[0, 1)``, so runs are reproducible and
both versions can be compared exactly. Logits must be finite or ``-inf`` (a mask).

The Triton kernel (``sampling_triton.py``) needs no sort either: it finds the top-k and
top-p cut-offs by bisection over the float values' bit patterns.
"""

from __future__ import annotations

import torch

from .dispatch import triton_impl

__all__ = ["sample_tokens", "sample_tokens_ref", "sampling_rows"]

TOP_P_MIN = 1e-30


def _row(value, b: int, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).reshape(-1).expand(b).contiguous()
    return torch.full((b,), value, dtype=dtype, device=device)


def sampling_rows(logits: torch.Tensor, temperature, top_k, top_p, uniform, generator=None):
    """Per-row settings as tensors on the logits' device: ``inv_t`` (0: greedy), ``top_k``
    (int64), ``top_p`` and ``uniform`` (fp32), each ``[B]``. Scalars broadcast; ``uniform=None``
    draws ``torch.rand`` on the device (with ``generator`` if given)."""
    b, dev = logits.shape[0], logits.device
    t = _row(temperature, b, torch.float32, dev)
    inv_t = torch.where(t > 0, 1.0 / t, torch.zeros_like(t))
    if uniform is None:
        uniform = torch.rand(b, device=dev, generator=generator)
    return (inv_t, _row(top_k, b, torch.long, dev), _row(top_p, b, torch.float32, dev),
            _row(uniform, b, torch.float32, dev))


def sample_tokens_ref(logits: torch.Tensor, temperature=0.0, top_k=0, top_p=1.0,
                      uniform: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Tokens ``[B]`` (int64) from ``logits [B, V]`` (any float dtype). ``temperature``, ``top_k``,
    ``top_p`` and ``uniform`` are ``[B]`` tensors or scalars; see the module docstring. Pass
    tensors already on the logits' device, or Python numbers: a CPU tensor costs a copy."""
    inv_t, top_k, top_p, u = sampling_rows(logits, temperature, top_k, top_p, uniform, generator)
    b, v = logits.shape
    x = logits.float()
    greedy_tok = x.argmax(-1)
    greedy = (inv_t == 0) | (x.amax(-1) == float("-inf"))
    z = x * inv_t[:, None]
    zmax = z.amax(-1, keepdim=True)
    zmax = torch.where(greedy[:, None], torch.zeros_like(zmax), zmax)
    ar = torch.arange(v, device=x.device).expand(b, v)
    order = torch.sort(z, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(-1, order, ar)
    k = torch.where((top_k > 0) & (top_k < v), top_k, torch.full_like(top_k, v))
    kept = rank < k[:, None]
    w = torch.exp(z - zmax) * kept
    # top-p: mass of the better-ranked kept tokens (exclusive cumulative sum in rank order)
    ws = w.gather(-1, order)
    before_sorted = torch.cat([torch.zeros_like(ws[:, :1]), ws.cumsum(-1)[:, :-1]], dim=-1)
    before = torch.empty_like(before_sorted).scatter_(-1, order, before_sorted)
    target = top_p.clamp(min=TOP_P_MIN) * w.sum(-1)
    kept &= (top_p >= 1)[:, None] | (before < target[:, None])
    w = w * kept
    live = w > 0
    c = w.cumsum(-1)
    hit = live & (c > (u * w.sum(-1))[:, None])
    first = torch.where(hit, ar, v).amin(-1)
    last = torch.where(live, ar, -1).amax(-1)
    tok = torch.where(first < v, first, last)
    return torch.where(greedy, greedy_tok, tok)


def sample_tokens(logits: torch.Tensor, temperature=0.0, top_k=0, top_p=1.0,
                  uniform: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """See :func:`sample_tokens_ref`. Triton (one program per row, no sort, no sync) on CUDA."""
    fn = triton_impl("sampling_triton", "sample_tokens", logits)
    return (fn or sample_tokens_ref)(logits, temperature, top_k, top_p, uniform, generator)
