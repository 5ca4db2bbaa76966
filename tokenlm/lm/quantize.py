"""Weight-only int8 inference for the token LM (CPU speed for single sessions).

Streaming one session is a chain of matrix-vector products: every step reads every weight of the
temporal and depth transformers once, so on a CPU its cost is memory traffic, not arithmetic.
:func:`quantize_lm` stores those weights as int8 with one scale per output row (4x fewer bytes)
and multiplies with PyTorch's int8 weight-only kernel (``aten._weight_int8pack_mm``, bf16
activations). On the 2-core development machine the LM step of the shipped ASR model got 1.5-1.6x
faster (``benchmarks/lm_speed.py --int8`` measures both paths in one run); the logits move by about
0.1 (on logits of size ~15) and ``recipes/eval_asr.py --int8`` measures what that does to WER.

Only inference: a quantized model has no gradients and cannot be saved (quantize after loading:
``load_lm(..., quantize="int8")``). Batched steps (many sessions) are compute-bound and gain
nothing; the kernel is for batch sizes of a few rows. Where the kernel is missing or gives wrong
results on this machine (checked once per process), the same int8 weights are multiplied in
float (correct, not faster). Embedding tables stay float: a step reads only a few of their rows.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TokenLMError

__all__ = ["Int8Linear", "quantize_lm", "is_quantized", "QUANTIZE_MODES"]

QUANTIZE_MODES = ("int8",)
_ALIGN = 16  # the kernel needs in_features to be a multiple of this (else it returns garbage)


@functools.cache
def _kernel_ok(device_type: str) -> bool:
    """Whether the int8 weight-only kernel exists here and agrees with the float product."""
    op = getattr(torch.ops.aten, "_weight_int8pack_mm", None)
    if op is None:
        return False
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-127, 128, (48, 64), generator=g, dtype=torch.int8)
    s = torch.rand(48, generator=g) / 64 + 1e-3
    x = torch.randn(3, 64, generator=g)
    ref = x @ (w.float() * s[:, None]).t()
    try:
        y = op(x.to(device_type, torch.bfloat16), w.to(device_type), s.to(device_type, torch.bfloat16))
    except Exception:  # not built for this device / dtype
        return False
    y = y.float().cpu()
    return bool(torch.isfinite(y).all()) and float((y - ref).norm() / ref.norm()) < 0.02


class Int8Linear(nn.Module):
    """``y = x W^T`` with ``W`` stored as int8 rows times a per-row scale (no bias)."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        if weight.dtype != torch.int8 or weight.dim() != 2 or scales.shape != weight.shape[:1]:
            raise ValueError("Int8Linear needs an int8 [out, in] weight and [out] scales")
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales.to(torch.bfloat16))

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> Int8Linear:
        """Symmetric per-row quantization of a float ``[out, in]`` weight."""
        w = weight.detach().float()
        # the kernel takes bf16 scales: round them first (up, so no row overflows 127) and quantize
        # against the rounded ones, so that weight * scale is exactly what the kernel multiplies
        scales = (w.abs().amax(dim=1).clamp(min=1e-12) / 127 * (1 + 2**-8)).to(torch.bfloat16).float()
        return cls((w / scales[:, None]).round().clamp(-127, 127).to(torch.int8), scales)

    @classmethod
    def cat(cls, parts: list[Int8Linear]) -> Int8Linear:
        """One layer computing the outputs of ``parts`` side by side (a fused projection)."""
        return cls(torch.cat([p.weight for p in parts]), torch.cat([p.scales for p in parts]))

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if _kernel_ok(x.device.type):
            y = torch.ops.aten._weight_int8pack_mm(x2.to(torch.bfloat16).contiguous(), self.weight, self.scales)
        else:
            y = F.linear(x2.float(), self.weight.float()) * self.scales.float()
        return y.to(x.dtype).view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _swap_linears(module: nn.Module) -> int:
    n = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and child.bias is None and child.in_features % _ALIGN == 0:
            setattr(module, name, Int8Linear.from_float(child.weight))
            n += 1
        else:
            n += _swap_linears(child)
    return n


@torch.no_grad()
def quantize_lm(model: nn.Module, mode: str = "int8") -> nn.Module:
    """Quantize, in place, the linear layers of a :class:`~tokenlm.lm.TokenLM`'s temporal and
    depth transformers (and the depth heads); returns the model, in eval mode."""
    if mode not in QUANTIZE_MODES:
        raise TokenLMError(f"unknown quantization {mode!r}: choose from {', '.join(QUANTIZE_MODES)}")
    if is_quantized(model):
        return model.eval()
    n = _swap_linears(model.blocks) + _swap_linears(model.depth)
    if n == 0:
        raise TokenLMError("this model has no linear layers that int8 quantization can take")
    model.quantized = mode
    return model.eval().requires_grad_(False)


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())
