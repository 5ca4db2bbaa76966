"""EnCodec (Défossez et al. 2022) behind the tokenlm :class:`~tokenlm.codecs.base.Codec` interface.

Wraps the PyPI ``encodec`` package. Weights are never downloaded: pass the official
checkpoint file (or the folder holding it) as ``weights=``, or set ``TOKENLM_ENCODEC_DIR``.

    >>> codec = EncodecCodec("24khz", weights="~/models/encodec")
    >>> codes = codec.encode(wav, num_codebooks=8)  # wav [B, 1, T] -> codes [B, 8, F] (6 kbps)
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from encodec import EncodecModel
from encodec.modules import SLSTM, SConv1d, SConvTranspose1d
from encodec.modules.seanet import SEANetResnetBlock
from torch import nn

from tokenlm.errors import CheckpointError, CodecError

from .base import Codec
from .streaming import StreamingModule, StreamingState

__all__ = ["EncodecCodec", "CHECKPOINT_NAMES", "WEIGHTS_ENV"]

WEIGHTS_ENV = "TOKENLM_ENCODEC_DIR"
CHECKPOINT_NAMES = {"24khz": "encodec_24khz-d7cc33bc.th", "48khz": "encodec_48khz-7e698e3e.th"}
_BUILDERS = {"24khz": EncodecModel.encodec_model_24khz, "48khz": EncodecModel.encodec_model_48khz}


class EncodecCodec(Codec):
    """EnCodec 24 kHz mono (causal, 2-32 codebooks) or 48 kHz stereo (2-16 codebooks).

    ``weights``: the official state-dict file, or a folder holding it under its official
    name (``encodec_24khz-d7cc33bc.th`` / ``encodec_48khz-7e698e3e.th``); None looks in
    ``$TOKENLM_ENCODEC_DIR``, and raises CheckpointError if nothing is there.
    ``pretrained=False`` with ``weights=None`` keeps random weights (for tests).

    The 48 kHz model normally cuts audio into 1 s segments, normalizes each one and sends
    its scale next to the codes. Codes alone cannot carry that scale, so here it runs with
    ``segment=None, normalize=False``: the whole signal in one pass, at its own level.

    ``padding`` (24 kHz only): the official model pads its causal convolutions by
    *reflecting* the signal, so the first 6 frames of a stream depend on frames up to the
    7th: ``"reflect"`` (default) gives exactly the official codes, and a stream's first
    chunk after start or reset must then hold at least 7 frames. ``"zeros"`` pads with
    zeros instead: truly causal, streams frame by frame, but the first ~6 frames differ a
    little from the official codes (the weights were trained with reflection).
    """

    def __init__(
        self,
        model: str = "24khz",
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        *,
        padding: str = "reflect",
    ):
        super().__init__()
        if model not in _BUILDERS:
            raise CodecError(f"unknown EnCodec model '{model}': use one of {', '.join(_BUILDERS)}")
        if padding not in ("reflect", "zeros") or (padding == "zeros" and model != "24khz"):
            raise CodecError(
                f"padding must be 'reflect' or (24khz only) 'zeros', got '{padding}' for {model}"
            )
        with warnings.catch_warnings():  # encodec uses the deprecated torch.nn.utils.weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            net = _BUILDERS[model](pretrained=False)
        path = _find_weights(model, weights, pretrained)
        if path is not None:
            _load_weights(net, path)
        else:
            _random_codebooks(net)
        net.segment, net.normalize = None, False  # codes-only interface: see the class docstring
        if padding == "zeros":
            for m in net.modules():
                if isinstance(m, SConv1d):
                    m.pad_mode = "constant"
        self.model = net.eval()
        self.variant, self.padding = model, padding
        self.name = f"encodec_{model}"
        self.sample_rate = net.sample_rate
        self.channels = net.channels
        self.hop_length = math.prod(net.encoder.ratios)
        self.num_codebooks = net.quantizer.n_q
        self.codebook_size = net.quantizer.bins
        self.supports_streaming = model == "24khz"  # 48 kHz: non-causal convs and GroupNorm over time
        if self.supports_streaming:
            self.encoder_stream = _SEANetStream(net.encoder, samples_per_frame=self.hop_length)
            self.decoder_stream = _SEANetStream(net.decoder, samples_per_frame=1)

    @property
    def config_dict(self) -> dict:
        cfg = {"name": self.name, "model": self.variant}
        if self.padding != "reflect":
            cfg["padding"] = self.padding  # changes the codes, so it is part of the fingerprint
        return cfg

    # ---- bandwidth <-> codebooks ---------------------------------------------------------
    @property
    def bandwidths(self) -> list[float]:
        """The model's target bandwidths in kbps, smallest first."""
        return [float(b) for b in self.model.target_bandwidths]

    def num_codebooks_for(self, bandwidth_kbps: float) -> int:
        """Codebooks that EnCodec uses at ``bandwidth_kbps`` (one of :attr:`bandwidths`)."""
        if float(bandwidth_kbps) not in self.bandwidths:
            raise CodecError(f"{self.name} has no {bandwidth_kbps} kbps mode; use one of {self.bandwidths}")
        return self.model.quantizer.get_num_quantizers_for_bandwidth(self.model.frame_rate, bandwidth_kbps)

    def bandwidth_for(self, num_codebooks: int) -> float:
        """The smallest target bandwidth (kbps) whose codebook count is >= ``num_codebooks``."""
        n = self._check_num_codebooks(num_codebooks)
        return next(b for b in self.bandwidths if self.num_codebooks_for(b) >= n)

    # ---- backend -------------------------------------------------------------------------
    def _encode(self, wav: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        b, f = wav.shape[0], wav.shape[-1] // self.hop_length
        if f == 0:  # an empty streaming chunk
            return torch.zeros(b, num_codebooks, 0, dtype=torch.long, device=wav.device)
        emb = self.encoder_stream(wav) if self.is_streaming else self.model.encoder(wav)  # [B, D, F]
        # RVQ is greedy, so the first n codebooks of a larger bandwidth are the n-codebook codes
        bandwidth = self.bandwidth_for(num_codebooks)
        codes = self.model.quantizer.encode(emb, self.model.frame_rate, bandwidth)  # [K, B, F]
        return codes.transpose(0, 1)[:, :num_codebooks].long().contiguous()  # [B, Q, F]

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        b, _, f = codes.shape
        if f == 0:
            return torch.zeros(b, self.channels, 0, device=codes.device)
        emb = self.model.quantizer.decode(codes.transpose(0, 1))  # [B, D, F]
        return self.decoder_stream(emb) if self.is_streaming else self.model.decoder(emb)  # [B, C, F * hop]


# ---- weights -----------------------------------------------------------------------------


def _find_weights(model: str, weights, pretrained: bool) -> Path | None:
    """The checkpoint file to load, None for random weights; CheckpointError if missing."""
    fname = CHECKPOINT_NAMES[model]
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            path = path / fname
        if not path.is_file():
            raise CheckpointError(f"{path}: no such EnCodec weights file (expected the official {fname})")
        return path
    if not pretrained:
        return None
    env = os.environ.get(WEIGHTS_ENV)
    if env and (Path(env).expanduser() / fname).is_file():
        return Path(env).expanduser() / fname
    looked = f" ({WEIGHTS_ENV}={env} has no {fname})" if env else ""
    raise CheckpointError(
        f"pretrained EnCodec weights cannot be downloaded here: put {fname} in a folder and pass it "
        f"as weights= (--weights on the command line), or set {WEIGHTS_ENV} to that folder{looked}"
    )


def _load_weights(net: EncodecModel, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, pickled objects, ...
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: cannot read EnCodec weights ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not an EnCodec state dict (expected a dict of tensors)")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        problems = [
            f"{len(keys)} {what} (e.g. {keys[0]})"
            for what, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("wrong shapes", wrong),
            )
            if keys
        ]
        raise CheckpointError(
            f"{path}: does not match the {net.sample_rate // 1000} kHz EnCodec model: {'; '.join(problems)}"
        )
    net.load_state_dict(state)


def _random_codebooks(net: EncodecModel) -> None:
    """encodec starts codebooks at zero (k-means fills them in training): make them random.

    Zero codebooks would map every frame to code 0, which makes random-weight tests vacuous.
    """
    with torch.no_grad():
        for layer in net.quantizer.vq.layers:
            cb = layer._codebook
            cb.embed.normal_()
            cb.embed_avg.copy_(cb.embed)
            cb.inited.fill_(1)


# ---- streaming ---------------------------------------------------------------------------


@dataclass
class _SEANetState(StreamingState):
    # per stateful layer, batch-first: conv left context [B, C, pad],
    # transposed-conv overlap held back [B, C, kernel - stride], LSTM h and c [B, layers, H]
    tensors: list[torch.Tensor]
    started: torch.Tensor  # [B] bool: the item has had its first chunk

    def reset(self, mask: torch.Tensor) -> None:
        for t in self.tensors:
            t[mask] = 0
        self.started[mask] = False


class _SEANetStream(StreamingModule):
    """Runs encodec's causal SEANet encoder or decoder chunk by chunk, exactly.

    Walks the layers itself: each causal SConv1d takes its left context from the previous
    chunk's last inputs (at a stream's start: the reflection or zeros the offline model
    pads with), each SConvTranspose1d adds the overlap it held back from the previous
    chunk, each SLSTM carries (h, c). Constant work per chunk, no recomputation.
    """

    def __init__(self, seanet: nn.Module, samples_per_frame: int):
        super().__init__()
        self._net = (seanet.model,)  # a tuple, so not a submodule: no duplicate parameters
        self.samples_per_frame = samples_per_frame  # input samples per codec frame
        self._slot: dict[int, int] = {}  # id(layer) -> index into state.tensors
        self._shapes: list[tuple[int, ...]] = []  # per-item shape of each state tensor
        self.min_first_frames = 1  # reflect padding needs this many frames to start a stream
        self._plan(seanet.model, samples_per_frame)

    def _add_slot(self, layer: nn.Module, *shapes: tuple[int, ...]) -> None:
        self._slot[id(layer)] = len(self._shapes)
        self._shapes.extend(shapes)

    def _plan(self, m: nn.Module, spf: int) -> int:
        """Allot state to stateful layers; ``spf``: input samples per frame at ``m``; returns it at the output."""
        if isinstance(m, nn.Sequential):
            for layer in m:
                spf = self._plan(layer, spf)
        elif isinstance(m, SEANetResnetBlock):
            self._plan(m.shortcut, spf)
            self._plan(m.block, spf)
        elif isinstance(m, SConv1d):
            conv = m.conv.conv
            (k,), (s,), (d,) = conv.kernel_size, conv.stride, conv.dilation
            pad = (k - 1) * d - (s - 1)
            assert m.causal and m.pad_mode in ("reflect", "constant") and spf % s == 0
            self._add_slot(m, (conv.in_channels, pad))
            if m.pad_mode == "reflect" and pad:  # reflection reads samples 1..pad of the first chunk
                self.min_first_frames = max(self.min_first_frames, -(-(pad + 1) // spf))
            spf //= s
        elif isinstance(m, SConvTranspose1d):
            convtr = m.convtr.convtr
            (k,), (s,) = convtr.kernel_size, convtr.stride
            assert m.causal and m.trim_right_ratio == 1.0
            self._add_slot(m, (convtr.out_channels, k - s))
            spf *= s
        elif isinstance(m, SLSTM):
            lstm = m.lstm
            self._add_slot(m, (lstm.num_layers, lstm.hidden_size), (lstm.num_layers, lstm.hidden_size))
        elif not isinstance(m, (nn.ELU, nn.Identity)):
            raise TypeError(f"cannot stream encodec layer {type(m).__name__}")
        return spf

    def init_state(self, batch_size, device, dtype):
        return _SEANetState(
            tensors=[torch.zeros(batch_size, *shape, device=device, dtype=dtype) for shape in self._shapes],
            started=torch.zeros(batch_size, dtype=torch.bool, device=device),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, frames * samples_per_frame]
        st = self._state
        frames = x.shape[-1] // self.samples_per_frame
        self._fresh = None if bool(st.started.all()) else ~st.started  # [B] items at their start
        if self._fresh is not None and frames < self.min_first_frames:
            raise CodecError(
                f"EnCodec with reflect padding (the official model) looks ahead at a stream's start: the "
                f"first chunk after start or reset must hold at least {self.min_first_frames} frames, got "
                f"{frames}; for frame-by-frame streaming use EncodecCodec(..., padding='zeros')"
            )
        y = self._run(self._net[0], x)
        st.started.fill_(True)
        self._fresh = None
        return y

    def _run(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(m, nn.Sequential):
            for layer in m:
                x = self._run(layer, x)
            return x
        if isinstance(m, SEANetResnetBlock):
            return self._run(m.shortcut, x) + self._run(m.block, x)
        if isinstance(m, SConv1d):
            return self._conv(m, x)
        if isinstance(m, SConvTranspose1d):
            return self._convtr(m, x)
        if isinstance(m, SLSTM):
            return self._lstm(m, x)
        return m(x)  # pointwise

    def _conv(self, m: SConv1d, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C', T // stride]
        st, i = self._state, self._slot[id(m)]
        pad = st.tensors[i].shape[-1]
        if pad:
            context = st.tensors[i]  # [B, C, pad]
            if m.pad_mode == "reflect" and self._fresh is not None:
                # offline, a stream starts with its samples pad..1 mirrored (zeros: the zero buffer)
                mirrored = x[..., 1 : pad + 1].flip(-1)
                context = torch.where(self._fresh[:, None, None], mirrored, context)
            x = torch.cat([context, x], dim=-1)
            # T is a multiple of the stride, so the next window starts right after this chunk
            st.tensors[i] = x[..., x.shape[-1] - pad :].clone()
        return m.conv(x)  # NormConv1d: conv (weight norm) + identity norm

    def _convtr(self, m: SConvTranspose1d, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C', T * s]
        st, i = self._state, self._slot[id(m)]
        y = m.convtr(x)  # [B, C', T * stride + trim]
        trim = st.tensors[i].shape[-1]
        if not trim:
            return y
        y = torch.cat([y[..., :trim] + st.tensors[i], y[..., trim:]], dim=-1)
        n = y.shape[-1] - trim
        tail = y[..., n:]  # incomplete: the next chunk adds to it
        bias = m.convtr.convtr.bias
        if bias is not None:  # the next chunk adds the bias to these samples again
            tail = tail - bias[:, None]
        st.tensors[i] = tail.clone()
        return y[..., :n]

    def _lstm(self, m: SLSTM, x: torch.Tensor) -> torch.Tensor:  # [B, H, T] -> [B, H, T]
        st, i = self._state, self._slot[id(m)]
        seq = x.permute(2, 0, 1)  # [T, B, H]
        h0, c0 = (st.tensors[j].transpose(0, 1).contiguous() for j in (i, i + 1))  # [layers, B, H]
        y, (h, c) = m.lstm(seq, (h0, c0))
        st.tensors[i], st.tensors[i + 1] = h.transpose(0, 1), c.transpose(0, 1)
        if m.skip:
            y = y + seq
        return y.permute(1, 2, 0)
