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

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..kernels import EmbeddingTables, decode_attention, embedding_sum, pack_embedding_tables, sample_tokens
from .model import TokenLM, apply_rope, rope_angles
from .quantize import Int8Linear
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
                 generator: torch.Generator | None = None, use_kernels: bool | None = None,
                 compile: bool = False):
        """``use_kernels``: route cache attention and sampling through :mod:`tokenlm.kernels`
        (Triton on CUDA, no host synchronisation); default: off. On an H200 (2026-11-30,
        ``benchmarks/kernels_bench.py``) the route's step took 1.09x, 1.25x and 1.01x the plain one's
        time at batch 1, 16 and 64: each step is mostly launch overhead, which the kernels do not
        remove. On the CPU the kernels' PyTorch references run, which the tests use to check the route.

        ``compile``: run the temporal transformer's step through ``torch.compile`` (fused kernels;
        one compilation per streamer, tens of seconds, then the same logits to float rounding).
        Meant for GPUs, where a step is mostly kernel launches; on a CPU it gained only ~1.2x."""
        self.model = model.eval()
        cfg = model.config
        self.streams = model.streams
        self.batch_size = batch_size
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.context = cfg.context
        kv, hd = cfg.num_kv_heads or cfg.num_heads, model.head_dim
        # ring slots 0 .. context-1, plus one scratch slot (never visible) that sessions which
        # are not live write to: every row writes every step, with no read-modify-write
        shape = (batch_size, kv, cfg.context + 1, hd)
        self.cache = [(torch.zeros(shape, device=self.device, dtype=self.dtype),
                       torch.zeros(shape, device=self.device, dtype=self.dtype)) for _ in model.blocks]
        self.slot_pos = torch.full((batch_size, cfg.context + 1), -1, dtype=torch.long, device=self.device)
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
        self.use_kernels = bool(use_kernels)
        self._fused: tuple | None = None  # (weights' versions, packed embeddings, fused qkv weights)
        self._temporal_fn = torch.compile(self._temporal, dynamic=False) if compile else self._temporal

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

    def reorder(self, index: torch.Tensor | Sequence[int]) -> None:
        """Row ``i`` takes over the whole state (cache, position, previous tokens, liveness) of row
        ``index[i]``: how a beam search keeps the hypotheses it extends."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        if idx.shape != (self.batch_size,):
            raise ValueError(f"reorder needs {self.batch_size} row indices, got {tuple(idx.shape)}")
        if bool((idx == self._rows).all()):
            return
        self.cache = [(ck.index_select(0, idx), cv.index_select(0, idx)) for ck, cv in self.cache]
        self.slot_pos, self.pos = self.slot_pos.index_select(0, idx), self.pos.index_select(0, idx)
        self.prev, self.live = self.prev.index_select(0, idx), self.live.index_select(0, idx)

    def commit(self, tokens: torch.Tensor) -> None:
        """End a frame whose tokens the caller chose itself (after :meth:`temporal_step` and the
        depth transformer's logits): live rows take ``tokens [B, K]`` as the frame's and move on."""
        tokens = tokens.to(self.device, torch.long)
        self.prev = torch.where(self.live[:, None], tokens, self.prev)
        self.pos = self.pos + self.live.long()

    # --- the step
    def _fused_weights(self):
        """The step's fused weights: the stream embeddings packed into one table and each block's
        q and kv projections as one (a weight matrix, or an :class:`Int8Linear` for a quantized
        model). Rebuilt when the model's weights change in place."""
        m = self.model
        params = [t.weight for t in m.embed.tables]
        if m.embed.codec_features:
            params += [m.embed.feature_proj.weight, m.embed.codebooks]
        for blk in m.blocks:
            params += [blk.attn.wq.weight, blk.attn.wkv.weight]
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._fused is None or self._fused[0] != key:
            tables = pack_embedding_tables([w.detach() for w in m.embed.weights()])
            qkv = []
            for blk in m.blocks:
                wq, wkv = blk.attn.wq, blk.attn.wkv
                if isinstance(wq, Int8Linear) and isinstance(wkv, Int8Linear):
                    qkv.append(Int8Linear.cat([wq, wkv]))
                else:
                    qkv.append(functools.partial(F.linear, weight=torch.cat([wq.weight, wkv.weight]).detach()))
            self._fused = (key, tables, qkv)
        return self._fused[1], self._fused[2]

    @torch.no_grad()
    def temporal_step(self) -> torch.Tensor:
        """Run the temporal transformer on the previous frame's tokens; ``[B, D]``."""
        tables, qkv_projs = self._fused_weights()
        return self._temporal_fn(tables.weight, tables.offsets, qkv_projs)

    def _temporal(self, table: torch.Tensor, offsets: torch.Tensor, qkv_projs: list) -> torch.Tensor:
        m = self.model
        x = embedding_sum(self.prev[:, :, None], EmbeddingTables(table, offsets))  # [B, 1, D]
        b, pos, live, c = self.batch_size, self.pos, self.live, self.context
        # live sessions write this frame's keys into their ring slot, the others into the scratch slot
        slot = torch.where(live, pos % c, c)
        self.slot_pos[self._rows, slot] = torch.where(live, pos, -1)
        sp = self.slot_pos
        visible = (sp >= 0) & (sp <= pos[:, None]) & (sp > (pos - c)[:, None])  # [B, C + 1]
        mask = visible[:, None, None, :]  # [B, 1, 1, C + 1]
        cos, sin = rope_angles(pos[:, None], m.head_dim, m.config.rope_theta, x.dtype)
        attn = m.blocks[0].attn
        h, hkv, hd = attn.heads, attn.kv_heads, attn.head_dim
        for blk, proj, (ck, cv) in zip(m.blocks, qkv_projs, self.cache):
            qkv = proj(blk.norm1(x))[:, 0]  # [B, (H + 2 Hkv) hd]
            q = apply_rope(qkv[:, : h * hd].view(b, h, 1, hd), cos, sin)
            k = apply_rope(qkv[:, h * hd: (h + hkv) * hd].view(b, hkv, 1, hd), cos, sin)
            ck[self._rows, :, slot] = k[:, :, 0]
            cv[self._rows, :, slot] = qkv[:, (h + hkv) * hd:].view(b, hkv, hd)
            if self.use_kernels:
                o = decode_attention(q[:, :, 0], ck, cv, visible)  # [B, H, hd]
            else:  # grouped queries share their kv head without copying the cache
                o = F.scaled_dot_product_attention(q.view(b, hkv, h // hkv, hd), ck, cv, attn_mask=mask)
            x = x + blk.attn.wo(o.reshape(b, 1, h * hd))
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
        self.commit(out)
        return (out, logits_out) if return_logits else out
