"""Streaming generation: one frame per call for a batch of independent sessions.

:class:`LMStreamer` holds, for ``batch_size`` session slots, a ring KV cache of the temporal
transformer (``context`` frames, so a session can run indefinitely), each session's position, and
the tokens of its previous frame. Each :meth:`LMStreamer.step` takes one frame of *provided* tokens
``[B, K]`` (in the model's delayed time axis):

- for input-only streams, the token that arrived (or :data:`ZERO` for "nothing");
- for generated streams, :data:`UNGENERATED` to sample it, or a token to force it (text forcing in
  TTS, fill tokens before a stream's delay, teacher forcing in tests);

and returns the frame's tokens ``[B, K]`` (provided ones passed through, the rest sampled), plus
the logits when asked. Sessions start, reset and stop on their own (:meth:`start`, :meth:`stop`);
slots that are not live still run (the batch keeps its shape, which is what CUDA graphs want) but
their state does not advance and their outputs are meaningless.

Sampling per stream: greedy (``temperature == 0``), temperature, top-k, top-p (:class:`Sampling`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..kernels import decode_attention, sample_tokens
from .model import TokenLM, rope_angles
from .streams import UNGENERATED, ZERO

__all__ = ["Sampling", "sample", "LMStreamer"]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off


GREEDY = Sampling()


def sample(logits: torch.Tensor, params: Sampling = GREEDY, generator: torch.Generator | None = None) -> torch.Tensor:
    """Tokens ``[B]`` from ``logits [B, V]`` (float32 maths, no host synchronisation)."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    x = logits.float() / params.temperature
    if params.top_k and params.top_k < x.shape[-1]:
        kth = x.topk(params.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_x, idx = x.sort(dim=-1, descending=True)
        probs = sorted_x.softmax(-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop = probs.cumsum(-1) - probs > params.top_p
        x = x.scatter(-1, idx, sorted_x.masked_fill(drop, float("-inf")))
    probs = x.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class LMStreamer:
    def __init__(self, model: TokenLM, batch_size: int, *, sampling: Sampling | Sequence[Sampling] = GREEDY,
                 generator: torch.Generator | None = None, use_kernels: bool | None = None):
        """``use_kernels``: route cache attention and sampling through :mod:`tokenlm.kernels`
        (Triton on CUDA, no host synchronisation); default: on CUDA only. On the CPU the kernels'
        PyTorch references run, which the tests use to check the route."""
        self.model = model.eval()
        cfg = model.config
        self.streams = model.streams
        self.batch_size = batch_size
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.context = cfg.context
        kv, hd = cfg.num_kv_heads or cfg.num_heads, model.head_dim
        shape = (batch_size, kv, cfg.context, hd)
        self.cache = [(torch.zeros(shape, device=self.device, dtype=self.dtype),
                       torch.zeros(shape, device=self.device, dtype=self.dtype)) for _ in model.blocks]
        self.slot_pos = torch.full((batch_size, cfg.context), -1, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.live = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        self.prev = model.start_ids.to(self.device)[None].repeat(batch_size, 1)
        n_gen = len(self.streams.generated)
        self.sampling = [sampling] * n_gen if isinstance(sampling, Sampling) else list(sampling)
        if len(self.sampling) != n_gen:
            raise ValueError(f"{len(self.sampling)} sampling settings for {n_gen} generated streams")
        self.generator = generator
        self._depth_cache: list = []
        self._rows = torch.arange(batch_size, device=self.device)
        self.use_kernels = self.device.type == "cuda" if use_kernels is None else use_kernels

    # --- sessions
    def _mask(self, rows) -> torch.Tensor:
        m = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        m[torch.as_tensor(rows, device=self.device, dtype=torch.long)] = True
        return m

    def start(self, rows: Sequence[int] | int | None = None) -> None:
        """(Re)start sessions in ``rows`` (all when None): position 0, empty cache, START tokens."""
        m = torch.ones(self.batch_size, dtype=torch.bool, device=self.device) if rows is None else \
            self._mask([rows] if isinstance(rows, int) else rows)
        self.pos.masked_fill_(m, 0)
        self.slot_pos.masked_fill_(m[:, None], -1)
        self.prev = torch.where(m[:, None], self.model.start_ids.to(self.device)[None], self.prev)
        self.live |= m

    reset = start

    def stop(self, rows: Sequence[int] | int) -> None:
        self.live &= ~self._mask([rows] if isinstance(rows, int) else rows)

    @property
    def free_slots(self) -> list[int]:
        return [i for i in range(self.batch_size) if not bool(self.live[i])]

    def _sample(self, logits: torch.Tensor, params: Sampling) -> torch.Tensor:
        if not self.use_kernels or params.temperature <= 0:
            return sample(logits, params, self.generator)
        u = torch.rand(logits.shape[0], device=logits.device, generator=self.generator)
        return sample_tokens(logits, params.temperature, params.top_k, params.top_p, u)

    # --- the step
    @torch.no_grad()
    def temporal_step(self) -> torch.Tensor:
        """Run the temporal transformer on the previous frame's tokens; ``[B, D]``."""
        m = self.model
        x = m.embed(self.prev[:, :, None])  # [B, 1, D]
        pos = self.pos
        slot = pos % self.context
        live = self.live
        # live sessions write this frame's keys into their ring slot
        self.slot_pos[self._rows, slot] = torch.where(live, pos, self.slot_pos[self._rows, slot])
        sp = self.slot_pos
        visible = (sp >= 0) & (sp <= pos[:, None]) & (sp > (pos - self.context)[:, None])
        mask = visible[:, None, None, :]  # [B, 1, 1, C]
        rope = rope_angles(pos[:, None], m.head_dim, m.config.rope_theta, x.dtype)
        for blk, (ck, cv) in zip(m.blocks, self.cache):
            q, k, v = blk.attn.qkv(blk.norm1(x), rope)
            keep = live[:, None, None]
            ck[self._rows, :, slot] = torch.where(keep, k[:, :, 0], ck[self._rows, :, slot])
            cv[self._rows, :, slot] = torch.where(keep, v[:, :, 0], cv[self._rows, :, slot])
            if self.use_kernels:
                o = decode_attention(q[:, :, 0], ck, cv, visible)  # [B, H, hd]
                x = x + blk.attn.wo(o.reshape(x.shape[0], 1, -1))
            else:
                x = x + blk.attn.attend(q, ck, cv, mask)
            x = x + blk.ffn(blk.norm2(x))
        return m.norm(x)[:, 0]

    @torch.no_grad()
    def step(self, provided: torch.Tensor | None = None, *, allowed: dict[int, torch.Tensor] | None = None,
             return_logits: bool = False):
        """One frame for every slot. ``provided [B, K]`` (None: sample every generated stream and
        feed ZERO to input-only ones). ``allowed`` maps a stream index to a bool ``[B, V]`` (or
        ``[V]``) mask of the tokens it may sample (TTS lets its text stream choose only PAD or
        EPAD; a row with no True is not masked). Returns tokens ``[B, K]``, or ``(tokens, logits)`` with ``logits`` a list, per
        generated stream, of ``[B, V_s]`` (before masking)."""
        b, k = self.batch_size, len(self.streams)
        if provided is None:
            provided = torch.tensor([UNGENERATED if s.generated else ZERO for s in self.streams],
                                    device=self.device)[None].repeat(b, 1)
        provided = provided.to(self.device, torch.long)
        if provided.shape != (b, k):
            raise ValueError(f"provided tokens must be [{b}, {k}], got {tuple(provided.shape)}")
        h = self.temporal_step()
        out = provided.clone()
        logits_out = []
        prev_tok = None
        for s, idx in enumerate(self.streams.generated):
            lg = self.model.depth.incremental(s, h, prev_tok, self._depth_cache)
            forced = provided[:, idx]
            masked = lg
            if allowed is not None and idx in allowed:
                ok = allowed[idx].to(lg.device).expand_as(lg)
                ok = ok | ~ok.any(-1, keepdim=True)  # a row that allows nothing is left alone
                masked = lg.masked_fill(~ok, float("-inf"))
            tok = torch.where(forced == UNGENERATED, self._sample(masked, self.sampling[s]), forced)
            out[:, idx] = tok
            prev_tok = tok
            if return_logits:
                logits_out.append(lg.float())
        if (out == UNGENERATED).any():
            raise ValueError("input-only streams need a token (or ZERO) at every frame, not UNGENERATED")
        self.prev = torch.where(self.live[:, None], out, self.prev)
        self.pos = self.pos + self.live.long()
        return (out, logits_out) if return_logits else out
