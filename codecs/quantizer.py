"""Residual vector quantizer: vector-quantize-pytorch for training, tokenlm.kernels for inference.

Training goes through ``ResidualVQ.forward`` (k-means init, EMA codebooks, dead-code
replacement, quantizer dropout, commitment loss). Encoding and decoding read its
codebooks and call the kernels in :mod:`tokenlm.kernels`, which have fast versions.
Codebook math is fp32 always (autocast off): low precision makes codebooks unstable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from tokenlm.kernels import codebook_lookup_sum, rvq_encode


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, F], straight-through gradients
    codes: torch.Tensor  # [B, Q, F]
    commit_loss: torch.Tensor  # scalar


class ResidualQuantizer(nn.Module):
    def __init__(
        self,
        dim: int,
        num_codebooks: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 2.0,
        kmeans_iters: int = 10,
        quantizer_dropout: bool = True,
        commitment_weight: float = 1.0,
        sync_codebook: bool | None = None,
    ):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ  # costs ~3 s at import: load lazily

        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        # Always built on the CPU, even under `with torch.device("meta")`: ResidualVQ keeps
        # non-persistent constant buffers that a state dict cannot restore. Its weights are
        # then replaced by load_state_dict(assign=True) like everything else.
        with torch.device("cpu"):
            self.vq = ResidualVQ(
                dim=dim,
                num_quantizers=num_codebooks,
                codebook_size=codebook_size,
                codebook_dim=codebook_dim,
                decay=ema_decay,
                kmeans_init=kmeans_iters > 0,
                kmeans_iters=max(kmeans_iters, 1),
                threshold_ema_dead_code=dead_code_threshold,
                quantize_dropout=quantizer_dropout,
                commitment_weight=commitment_weight,
                sync_codebook=sync_codebook,
            )

    @property
    def codebooks(self) -> torch.Tensor:  # [Q, K, Dc]
        return self.vq.codebooks

    def _inference_codebooks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stacked fp32 codebooks ``[Q, K, Dc]`` and their squared norms ``[Q, K]``, kept
        between calls (stacking copies them: a streaming codec would do it every frame) and
        rebuilt whenever a codebook changes: loading or moving (the key), or a training forward
        (dropped there: EMA updates, k-means init and dead-code replacement write through
        ``.data``, which leaves the version counter alone)."""
        embeds = [layer._codebook.embed for layer in self.vq.layers]
        key = tuple((e.data_ptr(), e._version, e.dtype) for e in embeds)
        cache = getattr(self, "_codebook_cache", None)
        if cache is None or cache[0] != key:
            cb = self.vq.codebooks.detach().float()
            cache = self._codebook_cache = (key, cb, (cb * cb).sum(-1))
        return cache[1], cache[2]

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Training path. x ``[B, D, F]``."""
        with torch.autocast(x.device.type, enabled=False):
            quantized, codes, losses = self.vq(rearrange(x.float(), "b d f -> b f d"))
        if self.training:
            self._codebook_cache = None
        return QuantizerOutput(
            quantized=rearrange(quantized, "b f d -> b d f"),
            codes=rearrange(codes, "b f q -> b q f"),
            commit_loss=losses.sum(),
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """x ``[B, D, F]`` -> codes ``[B, num_codebooks, F]`` (greedy: a prefix of the full encode)."""
        cb, norms = self._inference_codebooks()
        cb, norms = cb[:num_codebooks], norms[:num_codebooks]
        if isinstance(self.vq.project_in, nn.Identity) and not torch.is_autocast_enabled(x.device.type):
            return rvq_encode(x.float(), cb, norms)  # the common case (a streaming frame): no detours
        with torch.autocast(x.device.type, enabled=False):
            z = self.vq.project_in(rearrange(x.float(), "b d f -> b f d"))
            return rvq_encode(rearrange(z, "b f d -> b d f"), cb, norms)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, Q, F]`` (Q <= num_codebooks) -> ``[B, D, F]``."""
        with torch.autocast(codes.device.type, enabled=False):
            z = codebook_lookup_sum(codes, self._inference_codebooks()[0])  # [B, Dc, F]
            return rearrange(self.vq.project_out(rearrange(z, "b d f -> b f d")), "b f d -> b d f")

    @torch.no_grad()
    def randomize_codebooks(self, generator: torch.Generator | None = None) -> None:
        """Give an untrained quantizer usable random codebooks (skips k-means init)."""
        for layer in self.vq.layers:
            cb = layer._codebook
            cb.embed.copy_(torch.randn(cb.embed.shape, generator=generator))
            cb.embed_avg.copy_(cb.embed)
            cb.initted.fill_(True)
