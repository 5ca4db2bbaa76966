"""tokenlm's own codec: causal SEANet encoder/decoder, optional bottleneck transformer, residual VQ.

    wav [B, C, T] -> encoder (convs, stride = prod(ratios)) -> [B, D, F]
                  -> (transformer) -> residual VQ -> codes [B, Q, F]
    codes -> lookup-and-sum -> [B, D, F] -> (transformer) -> decoder (transposed convs) -> wav

Everything is causal, so the codec streams frame by frame with the same output as
offline. Sizes are set by :class:`RVQCodecConfig`; ``PRESETS`` names the supported ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from einops import rearrange
from torch import nn

from tokenlm.errors import CheckpointError

from .base import Codec
from .modules import CausalConv1d, CausalConvTranspose1d, CausalTransformer, ResidualBlock
from .quantizer import QuantizerOutput, ResidualQuantizer


@dataclass
class RVQCodecConfig:
    sample_rate: int = 16000
    channels: int = 1
    patch_size: int = 4  # samples folded into channels before the first conv (cheap first stride)
    ratios: tuple[int, ...] = (4, 5, 8)  # conv strides after patching; hop = patch_size * product
    base_channels: int = 32  # width at the patch rate, doubled after each stride ...
    max_channels: int = 256  # ... up to this
    dimension: int = 128  # latent width at frame rate
    residual_layers: int = 1  # residual blocks per stride level (dilations 1, 3, 9, ...)
    residual_kernel_size: int = 3
    kernel_size: int = 7  # first and last conv
    compress: int = 2  # residual-block bottleneck factor
    transformer_layers: int = 2  # per side (encoder and decoder); 0 disables
    transformer_heads: int = 4
    transformer_context: int = 50  # frames of attention context (2 s at 25 Hz)
    num_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int | None = None  # None: quantize in `dimension`
    ema_decay: float = 0.99
    dead_code_threshold: float = 2.0
    kmeans_iters: int = 10
    quantizer_dropout: bool = True
    commitment_weight: float = 1.0
    # the decoder's own size (None: as the encoder). Codes do not depend on these, so a larger
    # decoder can be trained on a trained codec's frozen codes (train_codec.py --decoder-only
    # --set decoder_base_channels=64) and every token file and token LM stays valid.
    decoder_base_channels: int | None = None
    decoder_max_channels: int | None = None
    decoder_residual_layers: int | None = None
    decoder_transformer_layers: int | None = None

    @property
    def hop_length(self) -> int:
        return self.patch_size * math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        return self.frame_rate * self.num_codebooks * math.log2(self.codebook_size)

    def level_channels(self, decoder: bool = False) -> list[int]:
        base, top = self.base_channels, self.max_channels
        if decoder:
            base, top = self.decoder_base_channels or base, self.decoder_max_channels or top
        return [min(base * 2**i, top) for i in range(len(self.ratios) + 1)]

    def decoder_setting(self, name: str) -> int:
        """``residual_layers`` or ``transformer_layers`` of the decoder (its own, else the shared one)."""
        own = getattr(self, f"decoder_{name}")
        return getattr(self, name) if own is None else own

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        for k in DECODER_FIELDS:  # unset: left out, so older codecs keep their fingerprints
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RVQCodecConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"codec config has unknown field(s) {unknown}: written by a newer tokenlm?")
        d = dict(d)
        if "ratios" in d:
            d["ratios"] = tuple(d["ratios"])
        return cls(**d)


DECODER_FIELDS = ("decoder_base_channels", "decoder_max_channels", "decoder_residual_layers",
                  "decoder_transformer_layers")

PRESETS: dict[str, RVQCodecConfig] = {
    # the default: 16 kHz speech, 25 Hz frames, 8 x 1024 codes = 2.0 kbps (1 codebook = 250 bit/s)
    "speech16k": RVQCodecConfig(),
    # a few-second-to-build model for tests and smoke runs (same frame geometry)
    "tiny": RVQCodecConfig(
        base_channels=8, max_channels=32, dimension=32, transformer_layers=1, transformer_heads=2,
        transformer_context=8, num_codebooks=4, codebook_size=64, kmeans_iters=2,
    ),
}
DEFAULT_PRESET = "speech16k"


class Encoder(nn.Module):
    def __init__(self, cfg: RVQCodecConfig):
        super().__init__()
        ch = cfg.level_channels()
        self.patch_size = cfg.patch_size
        layers: list[nn.Module] = [CausalConv1d(cfg.channels * cfg.patch_size, ch[0], cfg.kernel_size)]
        for i, r in enumerate(cfg.ratios):
            for j in range(cfg.residual_layers):
                layers.append(ResidualBlock(ch[i], cfg.residual_kernel_size, 3**j, cfg.compress))
            layers += [nn.ELU(), CausalConv1d(ch[i], ch[i + 1], 2 * r, stride=r)]
        layers += [nn.ELU(), CausalConv1d(ch[-1], cfg.dimension, 3)]
        self.convs = nn.Sequential(*layers)
        self.transformer = _maybe_transformer(cfg)

    def forward(self, wav):  # [B, C, T] -> [B, D, F]
        x = rearrange(wav, "b c (t p) -> b (c p) t", p=self.patch_size)
        return self.transformer(self.convs(x))


class Decoder(nn.Module):
    def __init__(self, cfg: RVQCodecConfig):
        super().__init__()
        ch = cfg.level_channels(decoder=True)
        self.transformer = _maybe_transformer(cfg, cfg.decoder_setting("transformer_layers"))
        layers: list[nn.Module] = [CausalConv1d(cfg.dimension, ch[-1], cfg.kernel_size)]
        for i in reversed(range(len(cfg.ratios))):
            r = cfg.ratios[i]
            layers += [nn.ELU(), CausalConvTranspose1d(ch[i + 1], ch[i], 2 * r, stride=r)]
            for j in range(cfg.decoder_setting("residual_layers")):
                layers.append(ResidualBlock(ch[i], cfg.residual_kernel_size, 3**j, cfg.compress))
        layers += [nn.ELU(), CausalConv1d(ch[0], cfg.channels * cfg.patch_size, cfg.kernel_size)]
        self.convs = nn.Sequential(*layers)
        self.patch_size = cfg.patch_size

    def forward(self, z):  # [B, D, F] -> [B, C, T]
        x = self.convs(self.transformer(z))
        return rearrange(x, "b (c p) t -> b c (t p)", p=self.patch_size)


def grow_decoder(small: RVQCodec, large: RVQCodec) -> bool:
    """Copy ``small``'s decoder into ``large``'s deeper one so that it decodes the same audio.

    ``large`` may have more residual blocks per level and more transformer layers, with the
    same widths. The extra residual blocks and layers get a zero output projection, so they
    start as the identity and training grows the decoder from where ``small``'s left off.
    Returns False (leaving ``large`` as it is) when the widths differ: that decoder starts fresh.
    """
    a, b = small.config, large.config
    if a.level_channels(decoder=True) != b.level_channels(decoder=True) or a.dimension != b.dimension:
        return False
    old = list(small.decoder.convs)
    i = 0
    for m in large.decoder.convs:
        if i < len(old) and type(m) is type(old[i]) and _same_shapes(m, old[i]):
            m.load_state_dict(old[i].state_dict())
            i += 1
        elif isinstance(m, ResidualBlock):  # an extra block: x + 0
            nn.init.zeros_(m.block[3].conv.weight)
            nn.init.zeros_(m.block[3].conv.bias)
        else:
            return False
    if i != len(old):
        return False
    old_t, new_t = small.decoder.transformer, large.decoder.transformer
    old_layers = list(old_t.layers) if isinstance(old_t, CausalTransformer) else []
    new_layers = list(new_t.layers) if isinstance(new_t, CausalTransformer) else []
    if len(new_layers) < len(old_layers):
        return False
    for j, layer in enumerate(new_layers):
        if j < len(old_layers):
            layer.load_state_dict(old_layers[j].state_dict())
        else:  # an extra layer: both residual branches output zero
            nn.init.zeros_(layer.out.weight)
            nn.init.zeros_(layer.ff[2].weight)
            nn.init.zeros_(layer.ff[2].bias)
    return True


def _same_shapes(m: nn.Module, n: nn.Module) -> bool:
    a, b = m.state_dict(), n.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def _maybe_transformer(cfg: RVQCodecConfig, layers: int | None = None) -> nn.Module:
    layers = cfg.transformer_layers if layers is None else layers
    if layers == 0:
        return nn.Identity()
    return CausalTransformer(cfg.dimension, layers, cfg.transformer_heads, cfg.transformer_context)


@dataclass
class CodecOutput:
    wav: torch.Tensor  # [B, C, T] reconstruction
    codes: torch.Tensor  # [B, Q, F]
    commit_loss: torch.Tensor  # scalar
    latent: torch.Tensor = field(repr=False)  # [B, D, F] encoder output before quantization


class RVQCodec(Codec):
    """The project's streaming residual-VQ codec (see module docstring)."""

    name = "tokenlm-rvq"

    def __init__(self, config: RVQCodecConfig | None = None, sync_codebook: bool | None = None):
        """``sync_codebook``: all-reduce codebook statistics across processes (training with
        several processes); None decides by whether torch.distributed is initialised."""
        super().__init__()
        cfg = self.config = config or RVQCodecConfig()
        self.sample_rate, self.channels = cfg.sample_rate, cfg.channels
        self.hop_length = cfg.hop_length
        self.num_codebooks, self.codebook_size = cfg.num_codebooks, cfg.codebook_size
        self.trained = True  # set False by tokenlm.codecs.load for untrained fallbacks
        self.encoder = Encoder(cfg)
        self.quantizer = ResidualQuantizer(
            cfg.dimension, cfg.num_codebooks, cfg.codebook_size, cfg.codebook_dim, cfg.ema_decay,
            cfg.dead_code_threshold, cfg.kmeans_iters, cfg.quantizer_dropout, cfg.commitment_weight,
            sync_codebook,
        )
        self.decoder = Decoder(cfg)

    @property
    def config_dict(self) -> dict:
        return {"name": self.name, "backend": "rvq", "config": self.config.to_dict()}

    @property
    def token_config(self) -> dict:
        # settings that only steer training (codebook updates, dropout) do not change the codes
        training = ("ema_decay", "dead_code_threshold", "kmeans_iters", "quantizer_dropout", "commitment_weight",
                    *DECODER_FIELDS)  # nor does the decoder's size
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in training}
        return {"name": self.name, "backend": "rvq", "config": cfg}

    def token_state_keys(self, state: dict) -> list[str]:
        # encoder and codebooks, without the EMA statistics that only training uses
        return [k for k in state if k.startswith(("encoder.", "quantizer."))
                and not k.endswith(("._codebook.embed_avg", "._codebook.cluster_size"))]

    def codebook_vectors(self) -> torch.Tensor:
        return self.quantizer._inference_codebooks()[0].clone()

    def forward(self, wav: torch.Tensor, frozen_codes: int | None = None) -> CodecOutput:
        """Training forward: wav ``[B, C, T]`` (T a multiple of hop_length).

        ``frozen_codes=n``: encode with the first ``n`` codebooks without gradients or codebook
        updates and train only the decoder (the codes keep their meaning)."""
        if frozen_codes is not None:
            with torch.no_grad():
                latent = self.encoder(wav)
                codes = self.quantizer.encode(latent, frozen_codes)
                quantized = self.quantizer.decode(codes)
            return CodecOutput(self.decoder(quantized), codes, torch.zeros((), device=wav.device), latent)
        latent = self.encoder(wav)
        q: QuantizerOutput = self.quantizer(latent)
        return CodecOutput(self.decoder(q.quantized), q.codes, q.commit_loss, latent)

    def _encode(self, wav, num_codebooks):
        return self.quantizer.encode(self.encoder(wav), num_codebooks)

    def _decode(self, codes):
        return self.decoder(self.quantizer.decode(codes))
