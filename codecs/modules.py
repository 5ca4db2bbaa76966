"""Causal, streamable building blocks of the SEANet-style codec.

Each layer runs offline on a whole signal (causal: left padding only) or, while
streaming, on chunks, carrying just enough state between calls that the concatenated
output equals the offline output. Inputs are ``[B, C, T]``; chunk lengths are whole
frames, so every strided layer sees a multiple of its stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .streaming import StreamingModule, StreamingState


@dataclass
class _BufferState(StreamingState):
    buffer: torch.Tensor  # [B, C, L]: left context (conv) or pending overlap (transposed conv)


class CausalConv1d(StreamingModule):
    """Conv1d padded on the left so output t sees inputs <= t; T in -> T // stride out."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, dilation=dilation)
        self.stride = stride
        # receptive field minus stride: what the first output needs before the first sample
        self.pad = (kernel_size - 1) * dilation + 1 - stride
        assert self.pad >= 0, "kernel must cover the stride"

    def init_state(self, batch_size, device, dtype):
        return _BufferState(torch.zeros(batch_size, self.conv.in_channels, self.pad, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        if self._state is None:
            return self.conv(F.pad(x, (self.pad, 0)))
        x = torch.cat([self._state.buffer, x], dim=-1)
        if self.pad:
            # x is pad + T long and T is a multiple of stride: the next window starts at T
            self._state.buffer = x[..., x.shape[-1] - self.pad :].clone()
        return self.conv(x)


class CausalConvTranspose1d(StreamingModule):
    """Transposed conv trimmed on the right: T in -> T * stride out, output never looks ahead.

    While streaming, the last ``kernel - stride`` outputs of a chunk are incomplete (the
    next frames add to them): they are held back and added to the next chunk's head.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int):
        super().__init__()
        self.convtr = nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride=stride)
        self.stride = stride
        self.trim = kernel_size - stride
        assert self.trim >= 0

    def init_state(self, batch_size, device, dtype):
        return _BufferState(torch.zeros(batch_size, self.convtr.out_channels, self.trim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)  # [B, C, T * stride + trim]
        if self.trim == 0:
            return y
        n = y.shape[-1] - self.trim
        if self._state is None:
            return y[..., :n]
        y = torch.cat([y[..., : self.trim] + self._state.buffer, y[..., self.trim :]], dim=-1)
        tail = y[..., n:]
        if self.convtr.bias is not None:
            # the bias is added once per output; the next chunk adds it again
            tail = tail - self.convtr.bias[:, None]
        self._state.buffer = tail.clone()
        return y[..., :n]


class ResidualBlock(nn.Module):
    """x + conv1x1(elu(conv_k(elu(x)))), with a bottleneck of ``dim // compress`` channels."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(),
            CausalConv1d(dim, hidden, kernel_size, dilation=dilation),
            nn.ELU(),
            CausalConv1d(hidden, dim, 1),
        )

    def forward(self, x):
        return x + self.block(x)


# ---- a small causal transformer for the bottleneck ------------------------------------------


def rope_cos_sin(pos: torch.Tensor, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[B, 1, T, dim / 2]`` of the rotary angles at integer positions ``pos [B, T]``."""
    d = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(d, device=pos.device, dtype=torch.float32) / d)
    angles = pos[:, None, :, None].float() * freqs  # [B, 1, T, d]
    return angles.cos(), angles.sin()


def rope(x: torch.Tensor, pos: torch.Tensor | None = None, base: float = 10000.0, *,
         cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Rotary embedding of x ``[B, H, T, D]`` at integer positions ``pos [B, T]`` (or with the
    ``cos_sin`` that :func:`rope_cos_sin` gave for them, to share between calls)."""
    cos, sin = cos_sin if cos_sin is not None else rope_cos_sin(pos, x.shape[-1], base)
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d].float(), x[..., d:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


@dataclass
class _KVState(StreamingState):
    k: torch.Tensor  # [B, L, H, W, Dh] rotated keys of the last W frames, per layer
    v: torch.Tensor  # [B, L, H, W, Dh]
    pos: torch.Tensor  # [B, W] absolute position of each cached frame
    valid: torch.Tensor  # [B, W] bool: slot holds a real frame
    offset: torch.Tensor  # [B] position of the next frame


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm2 = nn.RMSNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))


class CausalTransformer(StreamingModule):
    """Pre-norm transformer over frames with causal attention limited to ``context`` frames.

    Input and output ``[B, D, F]``. Offline, a banded causal mask; streaming, a KV cache
    of the last ``context`` frames (so it runs indefinitely in constant memory).
    """

    def __init__(self, dim: int, layers: int, heads: int, context: int, ff_mult: int = 4):
        super().__init__()
        assert dim % heads == 0
        self.dim, self.heads, self.context = dim, heads, context
        self.layers = nn.ModuleList(_Layer(dim, heads, ff_mult) for _ in range(layers))

    def init_state(self, batch_size, device, dtype):
        dh = self.dim // self.heads
        shape = (batch_size, len(self.layers), self.heads, self.context, dh)
        return _KVState(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            pos=torch.zeros(batch_size, self.context, device=device, dtype=torch.long),
            valid=torch.zeros(batch_size, self.context, device=device, dtype=torch.bool),
            offset=torch.zeros(batch_size, device=device, dtype=torch.long),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f = x.shape
        h = x.transpose(1, 2)  # [B, F, D]
        st = self._state
        start = st.offset if st is not None else torch.zeros(b, dtype=torch.long, device=x.device)
        qpos = start[:, None] + torch.arange(f, device=x.device)  # [B, F]
        if st is None:
            kpos, kvalid = qpos, torch.ones_like(qpos, dtype=torch.bool)
        else:
            kpos = torch.cat([st.pos, qpos], 1)  # [B, W + F]
            kvalid = torch.cat([st.valid, torch.ones_like(qpos, dtype=torch.bool)], 1)
        delta = qpos[:, :, None] - kpos[:, None, :]  # [B, F, K]
        mask = kvalid[:, None, :] & (delta >= 0) & (delta < self.context)
        mask = mask[:, None]  # [B, 1, F, K]
        new_k, new_v = [], []
        cos_sin = rope_cos_sin(qpos, self.dim // self.heads)  # the same for every layer
        for i, layer in enumerate(self.layers):
            q, k, v = layer.qkv(layer.norm1(h)).view(b, f, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            q, k = rope(q, cos_sin=cos_sin), rope(k, cos_sin=cos_sin)  # [B, H, F, Dh]
            if st is not None:
                k = torch.cat([st.k[:, i], k], 2)
                v = torch.cat([st.v[:, i], v], 2)
                new_k.append(k[:, :, -self.context :])
                new_v.append(v[:, :, -self.context :])
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            h = h + layer.out(a.transpose(1, 2).reshape(b, f, self.dim))
            h = h + layer.ff(layer.norm2(h))
        if st is not None:
            st.k, st.v = torch.stack(new_k, 1), torch.stack(new_v, 1)
            st.pos, st.valid = kpos[:, -self.context :], kvalid[:, -self.context :]
            st.offset = st.offset + f
        return h.transpose(1, 2)
