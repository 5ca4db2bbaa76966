"""The token LM: a temporal transformer over frames and a depth transformer inside each frame.

- **Temporal transformer.** Position ``t`` reads the tokens of frame ``t - 1`` of every stream
  (START at ``t = 0``), embedded per stream and summed (ZERO embeds to the zero vector), and runs
  causal self-attention limited to the last ``context`` frames (RoPE, RMSNorm, SwiGLU, optional
  grouped-query attention). Its output summarises everything before frame ``t``.
- **Depth transformer.** Inside frame ``t`` it produces the generated streams one after the other
  (the text token, then codebook 0, 1, ...): step ``s`` sees a per-step projection of the temporal
  output plus the embedding of the token chosen at step ``s - 1``, under causal attention over the
  steps, and a per-step head gives that stream's logits.
- **Loss.** Cross-entropy per generated stream over its valid positions (see
  :func:`tokenlm.lm.streams.apply_delays`), averaged with the streams' weights.

Streaming generation with a ring KV cache lives in :mod:`tokenlm.lm.generate`; it gives the same
logits as :meth:`TokenLM.forward` over the same tokens (tested).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .streams import ZERO, Streams

__all__ = ["LMConfig", "TokenLM", "LM_PRESETS"]


@dataclass
class LMConfig:
    streams: list = field(default_factory=list)  # list of StreamSpec dicts (see Streams)
    frame_rate: float = 25.0
    dim: int = 256
    num_layers: int = 6
    num_heads: int = 4
    num_kv_heads: int = 0  # 0: as many as num_heads
    hidden_mult: float = 8 / 3
    context: int = 250  # frames the temporal attention sees (sliding window)
    depth_dim: int = 256
    depth_layers: int = 2
    depth_heads: int = 4
    rope_theta: float = 10000.0
    dropout: float = 0.0
    norm_eps: float = 1e-5
    # width of the codec's codebook vectors added to the audio embeddings through a learned
    # projection (0: off). The vectors themselves are set by TokenLM.set_codec_codebooks.
    codec_features: int = 0

    def __post_init__(self):
        self.streams = Streams(self.streams).to_list()
        if self.dim % self.num_heads or self.depth_dim % self.depth_heads:
            raise ValueError("dim / depth_dim must be divisible by num_heads / depth_heads")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})")
        if (self.dim // self.num_heads) % 2:
            raise ValueError("the head size must be even (RoPE)")
        if self.context < 1:
            raise ValueError("context must be >= 1 frame")

    @property
    def stream_specs(self) -> Streams:
        return Streams(self.streams)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LMConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LM config fields: {sorted(unknown)}")
        return cls(**d)


# Model sizes; the streams come from the task (Streams.asr / .tts / .build).
LM_PRESETS: dict[str, dict] = {
    "tiny": dict(dim=64, num_layers=2, num_heads=2, depth_dim=64, depth_layers=1, depth_heads=2, context=64),
    "small": dict(dim=256, num_layers=6, num_heads=4, num_kv_heads=2, depth_dim=256, depth_layers=2,
                  depth_heads=4, context=250),
    "base": dict(dim=512, num_layers=12, num_heads=8, num_kv_heads=4, depth_dim=512, depth_layers=4,
                 depth_heads=8, context=500),
}


def _hidden(dim: int, mult: float) -> int:
    return 64 * math.ceil(dim * mult / 64)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos, sin of shape ``[B, 1, T, head_dim / 2]`` for integer ``positions [B, T]``.

    Angles are computed in float64 so that sessions that have run for hours keep exact rotations."""
    inv = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float64) / head_dim)
    ang = positions.to(torch.float64)[..., None] * inv
    return ang.cos().to(dtype)[:, None], ang.sin().to(dtype)[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.wq = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.wkv = nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(heads * self.head_dim, dim, bias=False)
        self.dropout = dropout

    def qkv(self, x: torch.Tensor, rope=None):
        """``x [B, T, D]`` -> q ``[B, H, T, hd]``, k, v ``[B, Hkv, T, hd]`` (RoPE applied when given)."""
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.wkv(x).view(b, t, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def attend(self, q, k, v, mask=None, is_causal=False) -> torch.Tensor:
        """Attention of ``q`` over ``k, v``; ``mask`` (bool, True = may attend) broadcasts to
        ``[B, H, Tq, Tk]``. Returns ``[B, Tq, D]``."""
        rep = self.heads // self.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None,
                                             dropout_p=self.dropout if self.training else 0.0)
        b, _, t, _ = out.shape
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(a) * b)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, hidden: int, eps: float, dropout: float):
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, kv_heads, dropout)
        self.norm2 = nn.RMSNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, rope=None, mask=None, is_causal=False):
        q, k, v = self.attn.qkv(self.norm1(x), rope)
        x = x + self.drop(self.attn.attend(q, k, v, mask, is_causal))
        return x + self.drop(self.ffn(self.norm2(x)))


def window_mask(t: int, context: int, device=None) -> torch.Tensor:
    """``[T, T]`` bool: position i may attend to j when ``i - context < j <= i``."""
    i = torch.arange(t, device=device)
    d = i[:, None] - i[None, :]
    return (d >= 0) & (d < context)


class StreamEmbedding(nn.Module):
    """One embedding table per stream; the frame's input is their sum (ZERO embeds to 0).

    With ``codec_features = Dc > 0``, an audio stream's code ``i`` of codebook ``q`` embeds to
    ``table[i] + proj(codebooks[q, i])``: the codec's own (frozen, rms-normalised) codebook vector
    through a learned ``Dc -> dim`` projection, so that codes the codec places close together start
    close together; the summed input then holds a linear image of the codec's latent. Small corpora
    generalise far better from this geometry than from independent random rows."""

    def __init__(self, streams: Streams, dim: int, codec_features: int = 0):
        super().__init__()
        self.vocab = [s.input_vocab for s in streams]
        self.cards = [s.card for s in streams]
        self.tables = nn.ModuleList(nn.Embedding(v, dim) for v in self.vocab)
        # codebook index per stream (audio_q / in_q), -1 for text
        self.codebook_of = [int(s.name.rsplit("_", 1)[1]) if s.kind == "audio" else -1 for s in streams]
        self.codec_features = codec_features
        if codec_features:
            audio = [s for s in streams if s.kind == "audio"]
            if not audio:
                raise ValueError("codec_features needs audio streams")
            q, card = max(self.codebook_of) + 1, audio[0].card
            self.feature_proj = nn.Linear(codec_features, dim, bias=False)
            self.register_buffer("codebooks", torch.zeros(q, card, codec_features))

    def set_codebooks(self, codebooks: torch.Tensor) -> None:
        """Install the codec's codebooks ``[Q', K, Dc]`` (Q' >= the codebooks the streams use) and
        initialise for them: the vectors are scaled so that the full latent (their sum) has unit rms,
        the projection so that its image has the size of a random embedding sum, and the tables'
        code rows start at zero (the projection alone tells codes apart at first)."""
        self._install_codebooks(codebooks)
        with torch.no_grad():
            n_audio = sum(1 for c in self.codebook_of if c >= 0)
            dc = self.codebooks.shape[-1]
            nn.init.normal_(self.feature_proj.weight, std=0.02 * math.sqrt(n_audio) / math.sqrt(dc))
            self._zero_code_rows()

    def _install_codebooks(self, codebooks: torch.Tensor) -> None:
        q, card, dc = self.codebooks.shape
        if codebooks.dim() != 3 or codebooks.shape[0] < q or codebooks.shape[1:] != (card, dc):
            raise ValueError(f"codebooks of shape {tuple(codebooks.shape)} do not fit the model's audio "
                             f"streams ({q} codebooks of {card} x {dc})")
        cb = codebooks[:q].detach().float()
        rms = cb.pow(2).sum(-1).mean(-1).sum().div(dc).sqrt().clamp(min=1e-8)  # rms of the summed latent
        with torch.no_grad():
            self.codebooks.copy_(cb / rms)

    @torch.no_grad()
    def _zero_code_rows(self) -> None:
        card = self.codebooks.shape[1]
        for table, c in zip(self.tables, self.codebook_of):
            if c >= 0:
                table.weight[:card].zero_()

    @torch.no_grad()
    def retarget(self, codebooks: torch.Tensor | None) -> None:
        """Move to another codec's codes: its codebooks replace the old ones (the learned projection
        stays: a codec trained on from another shares much of its latent space), and every learned
        per-code row starts again (at zero with codec features, else at random), since code ``i``
        now names another vector."""
        if self.codec_features:
            if codebooks is None:
                raise ValueError("a codec-features model needs the new codec's codebooks")
            self._install_codebooks(codebooks)
            self._zero_code_rows()
            return
        for table, c, card in zip(self.tables, self.codebook_of, self.cards):
            if c >= 0:
                nn.init.normal_(table.weight[:card], std=0.02)

    def weights(self) -> list[torch.Tensor]:
        """The effective embedding table of every stream (codec features folded in)."""
        if not self.codec_features:
            return [t.weight for t in self.tables]
        feats = self.feature_proj(self.codebooks.to(self.feature_proj.weight.dtype))  # [Q, K, D]
        out = []
        for table, c in zip(self.tables, self.codebook_of):
            w = table.weight
            if c >= 0:
                w = torch.cat([w[: feats.shape[1]] + feats[c].to(w.dtype), w[feats.shape[1]:]])
            out.append(w)
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, K, T]`` -> ``[B, T, D]``."""
        out = None
        for k, weight in enumerate(self.weights()):
            ids = tokens[:, k]
            e = F.embedding(ids.clamp(min=0), weight) * (ids != ZERO)[..., None].to(weight.dtype)
            out = e if out is None else out + e
        return out


def embed_or_zero(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    keep = ids != ZERO
    return table(ids.clamp(min=0)) * keep[..., None].to(table.weight.dtype)


class DepthTransformer(nn.Module):
    """Generates the frame's streams in order; step ``s`` conditions on step ``s - 1``'s token."""

    def __init__(self, cfg: LMConfig, streams: Streams):
        super().__init__()
        gen = [streams[i] for i in streams.generated]
        self.steps = len(gen)
        d = cfg.depth_dim
        self.in_proj = nn.ModuleList(nn.Linear(cfg.dim, d, bias=False) for _ in gen)
        self.prev_emb = nn.ModuleList(nn.Embedding(s.input_vocab, d) for s in gen[:-1])
        self.blocks = nn.ModuleList(Block(d, cfg.depth_heads, cfg.depth_heads, _hidden(d, cfg.hidden_mult),
                                          cfg.norm_eps, cfg.dropout) for _ in range(cfg.depth_layers))
        self.norm = nn.RMSNorm(d, eps=cfg.norm_eps)
        self.heads = nn.ModuleList(nn.Linear(d, s.output_vocab, bias=False) for s in gen)

    def step_input(self, s: int, h: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        x = self.in_proj[s](h)
        if s > 0:
            x = x + embed_or_zero(self.prev_emb[s - 1], prev)
        return x

    def forward(self, h: torch.Tensor, gen_tokens: torch.Tensor) -> list[torch.Tensor]:
        """Teacher-forced: ``h [N, D]``, ``gen_tokens [N, S]`` -> logits per step ``[N, V_s]``."""
        x = torch.stack([self.step_input(s, h, gen_tokens[:, s - 1] if s else None)
                         for s in range(self.steps)], dim=1)
        for blk in self.blocks:
            x = blk(x, is_causal=True)
        x = self.norm(x)
        return [self.heads[s](x[:, s]) for s in range(self.steps)]

    def incremental(self, s: int, h: torch.Tensor, prev: torch.Tensor | None, cache: list) -> torch.Tensor:
        """Step ``s`` alone, attending to the earlier steps' keys/values in ``cache`` (extended)."""
        x = self.step_input(s, h, prev)[:, None]
        if s == 0:
            cache.clear()
        for i, blk in enumerate(self.blocks):
            q, k, v = blk.attn.qkv(blk.norm1(x))
            if s == 0:
                cache.append((k, v))
            else:
                pk, pv = cache[i]
                k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
                cache[i] = (k, v)
            x = x + blk.attn.attend(q, k, v)
            x = x + blk.ffn(blk.norm2(x))
        return self.heads[s](self.norm(x)[:, 0])


class TokenLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.config = cfg
        self.streams = cfg.stream_specs
        kv = cfg.num_kv_heads or cfg.num_heads
        self.embed = StreamEmbedding(self.streams, cfg.dim, cfg.codec_features)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads, kv, _hidden(cfg.dim, cfg.hidden_mult),
                                          cfg.norm_eps, cfg.dropout) for _ in range(cfg.num_layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.depth = DepthTransformer(cfg, self.streams)
        self.register_buffer("start_ids", torch.tensor(self.streams.start_ids), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def set_codec_codebooks(self, codebooks: torch.Tensor) -> None:
        """Give a ``codec_features`` model its codec's codebooks ``[Q, K, Dc]`` (before training;
        a trained model carries them in its weights)."""
        if not self.config.codec_features:
            raise ValueError("this model has codec_features = 0: it takes no codebooks")
        self.embed.set_codebooks(codebooks)

    @torch.no_grad()
    def retarget_codec(self, codebooks: torch.Tensor | None = None) -> None:
        """Keep what was learned about text, time and sound, and start again on what names codes:
        for a fine-tune on another codec's tokens (``codebooks [Q, K, Dc]``: the new codec's, needed
        with ``codec_features``). The input rows of the audio codes and, for generated audio
        streams, the depth transformer's output heads and previous-code embeddings are reset."""
        self.embed.retarget(codebooks)
        gen = [self.streams[i] for i in self.streams.generated]
        for s, spec in enumerate(gen):
            if spec.kind == "audio":
                nn.init.normal_(self.depth.heads[s].weight, std=0.02)
                if s + 1 < len(gen):  # prev_emb[s] embeds stream s's token for step s + 1
                    nn.init.normal_(self.depth.prev_emb[s].weight, std=0.02)

    @torch.no_grad()
    def load_matching(self, state: dict[str, torch.Tensor]) -> int:
        """Copy the weights of ``state`` whose names and shapes match this model's; the others keep
        their fresh initialisation (e.g. the text embeddings and text head after a change of text
        tokenizer). Returns how many were copied."""
        own = self.state_dict()
        kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(kept, strict=False)
        return len(kept)

    @property
    def head_dim(self) -> int:
        return self.config.dim // self.config.num_heads

    def num_parameters(self) -> int:
        """Weights, counting those an int8-quantized model keeps as buffers."""
        from .quantize import Int8Linear

        return sum(p.numel() for p in self.parameters()) + sum(
            m.weight.numel() for m in self.modules() if isinstance(m, Int8Linear))

    def shifted_inputs(self, delayed: torch.Tensor) -> torch.Tensor:
        """Temporal inputs for targets ``delayed [B, K, T]``: START, then frames 0 .. T-2."""
        start = self.start_ids.to(delayed.device)[None, :, None].expand(delayed.shape[0], -1, 1)
        return torch.cat([start, delayed[:, :, :-1]], dim=2)

    def temporal(self, inputs: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``inputs [B, K, T]`` -> ``[B, T, D]`` (the whole sequence at once)."""
        b, _, t = inputs.shape
        x = self.embed(inputs)
        pos = torch.arange(offset, offset + t, device=inputs.device)[None].expand(b, -1)
        rope = rope_angles(pos, self.head_dim, self.config.rope_theta, x.dtype)
        mask = None if t <= self.config.context else window_mask(t, self.config.context, inputs.device)
        for blk in self.blocks:
            x = blk(x, rope, mask, is_causal=mask is None)
        return self.norm(x)

    def forward(self, delayed: torch.Tensor) -> list[torch.Tensor]:
        """Teacher-forced logits for every generated stream: ``[B, T, V_s]`` each.

        ``delayed [B, K, T]`` are the delayed target tokens (what :func:`apply_delays` returns)."""
        b, _, t = delayed.shape
        h = self.temporal(self.shifted_inputs(delayed))
        gen = delayed[:, self.streams.generated].permute(0, 2, 1).reshape(b * t, -1)
        logits = self.depth(h.reshape(b * t, -1), gen)
        return [lg.view(b, t, -1) for lg in logits]

    def loss(self, delayed: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted mean of per-stream cross-entropies over valid positions; also returns per-stream
        losses and accuracies (``{"loss/text": tensor, "acc/text": tensor}``, detached) for logging; text
        streams also get ``wacc/`` (accuracy on real text tokens, without PAD/EPAD)."""
        return self.loss_from_logits(self.forward(delayed), delayed, valid)

    def loss_from_logits(self, logits: list[torch.Tensor], delayed: torch.Tensor, valid: torch.Tensor):
        """:meth:`loss` given the output of :meth:`forward` (e.g. through a DDP wrapper)."""
        total, weights, stats = 0.0, 0.0, {}
        for s, k in enumerate(self.streams.generated):
            spec = self.streams[k]
            target, mask = delayed[:, k], valid[:, k] & (delayed[:, k] >= 0)
            n = mask.sum()
            ce = F.cross_entropy(logits[s].float().flatten(0, 1), target.clamp(min=0).flatten(), reduction="none")
            ce = (ce * mask.flatten()).sum() / n.clamp(min=1)
            if n > 0 and spec.weight > 0:
                total = total + spec.weight * ce
                weights += spec.weight
            with torch.no_grad():
                acc = ((logits[s].argmax(-1) == target) & mask).sum() / n.clamp(min=1)
            stats[f"loss/{spec.name}"] = ce.detach()
            stats[f"acc/{spec.name}"] = acc
            if spec.kind == "text":  # accuracy on real text tokens alone (PAD dominates acc/)
                with torch.no_grad():
                    words = mask & (target < spec.card)
                    stats[f"wacc/{spec.name}"] = ((logits[s].argmax(-1) == target) & words).sum() / \
                        words.sum().clamp(min=1)
        loss = total / max(weights, 1e-9) if weights else logits[0].sum() * 0.0
        return loss, stats
