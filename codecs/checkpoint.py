"""Codec checkpoints: safetensors weights + a JSON config, and ``load(name_or_path)``.

A checkpoint is a folder with ``model.safetensors`` and ``config.json``. The config is
also embedded in the safetensors metadata, so the weights file alone is enough::

    {"format": "tokenlm-codec", "version": 1, "backend": "rvq", "config": {...RVQCodecConfig...}}

Models are built on the meta device and the weights assigned, so nothing is initialised
twice. Every way a checkpoint can be broken raises :class:`CheckpointError`.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path

import torch

from tokenlm.errors import CheckpointError
from tokenlm.fileio import atomic_write

from .base import Codec
from .rvq_codec import DEFAULT_PRESET, PRESETS, RVQCodec, RVQCodecConfig

FORMAT, VERSION = "tokenlm-codec", 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
ENCODEC_NAMES = ("encodec_24khz", "encodec_48khz")


class UntrainedCodecWarning(UserWarning):
    """The codec has random weights: tokens and audio are meaningless until it is trained."""


# EMA statistics of the codebooks: needed to keep training, not to encode or decode
TRAINING_ONLY = ("._codebook.embed_avg", "._codebook.cluster_size")


def save_codec(codec: RVQCodec, path: str | os.PathLike, *, inference_only: bool = False,
               dtype: torch.dtype | None = None) -> Path:
    """Write ``codec`` to the folder ``path`` (created) as model.safetensors + config.json, atomically.

    ``inference_only`` drops the codebooks' EMA statistics and ``dtype`` (e.g. torch.float16)
    stores floating-point weights smaller: what ships in the repository. Such a
    checkpoint loads as usual (back in float32) but cannot resume training.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, **codec.config_dict, "trained": bool(codec.trained),
              "inference_only": inference_only}
    state = {k: v.detach().to("cpu").contiguous() for k, v in codec.state_dict().items()
             if not (inference_only and k.endswith(TRAINING_ONLY))}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    atomic_write(path / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"tokenlm": json.dumps(header)}))
    atomic_write(path / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(header, indent=2) + "\n"))
    return path


def load_codec(path: str | os.PathLike, device: str | torch.device = "cpu") -> RVQCodec:
    """Load a checkpoint folder (or its model.safetensors) written by :func:`save_codec`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.exists():
        raise CheckpointError(f"{path}: no codec checkpoint here (expected {WEIGHTS} and {CONFIG})")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: cannot read weights, file truncated or not safetensors ({e})") from None
    header = _parse_header(meta.get("tokenlm"), weights)
    sidecar = weights.parent / CONFIG
    if sidecar.exists():
        try:
            side = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, OSError) as e:
            raise CheckpointError(f"{sidecar}: not valid JSON ({e})") from None
        if side.get("config") != header.get("config"):
            raise CheckpointError(f"{sidecar}: config does not match the one stored in {weights.name}")
    cfg = RVQCodecConfig.from_dict(header["config"])
    with torch.device("meta"):
        codec = RVQCodec(cfg)
    if header.get("inference_only"):
        _fill_training_statistics(state)
    _assign(codec, state, weights)
    codec.trained = bool(header.get("trained", True))
    if not codec.trained:
        warnings.warn(f"codec checkpoint {path} is untrained (random weights): its tokens and audio carry "
                      "no meaning", UntrainedCodecWarning, stacklevel=2)
    return codec.to(device).eval()


def bundled_codecs() -> dict[str, Path]:
    """The trained codecs shipped in the package, name -> folder (``default`` first); an older
    default stays bundled under its own name for the token LMs and token files made with it."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    folders = sorted(PRETRAINED_DIR.iterdir(), key=lambda p: (p.name != "default", p.name))
    return {p.name: p for p in folders if (p / WEIGHTS).is_file()}


@functools.lru_cache(maxsize=16)
def _token_fingerprint_of(folder: str, mtime_ns: int) -> str:
    return load_codec(folder).token_fingerprint


def bundled_for_tokens(token_fingerprint: str | None) -> str | None:
    """The name of the bundled codec whose codes have this token fingerprint, or None."""
    if not token_fingerprint:
        return None
    for name, folder in bundled_codecs().items():
        if _token_fingerprint_of(str(folder), (folder / WEIGHTS).stat().st_mtime_ns) == token_fingerprint:
            return name
    return None


def load(name_or_path: str | os.PathLike = "default", *, weights: str | os.PathLike | None = None,
         device: str | torch.device = "cpu") -> Codec:
    """Build a codec by name or path.

    - ``"default"``: the bundled default codec (an untrained ``speech16k`` model, with an
      :class:`UntrainedCodecWarning`, until trained weights ship);
    - the name of another bundled codec (:func:`bundled_codecs`, e.g. an earlier default);
    - a preset name (``"speech16k"``, ``"tiny"``): that architecture with random weights
      (seed 0), for training or tests;
    - ``"encodec_24khz"`` / ``"encodec_48khz"``: EnCodec, with pretrained weights read from
      ``weights`` (a file or folder) or ``$TOKENLM_ENCODEC_DIR``;
    - a path to a checkpoint folder or ``.safetensors`` file.
    """
    name = str(name_or_path)
    if weights is not None and name not in ENCODEC_NAMES:
        raise CheckpointError(f"weights= is for the EnCodec backends only; '{name}' carries its own weights")
    if name == "default":
        bundled = PRETRAINED_DIR / "default"
        if (bundled / WEIGHTS).exists():
            return load_codec(bundled, device)
        return untrained(DEFAULT_PRESET, device=device, label=f"the default codec (preset '{DEFAULT_PRESET}')")
    if name in ENCODEC_NAMES:
        from .encodec_backend import EncodecCodec

        return EncodecCodec(model=name.split("_")[1], weights=weights).to(device)
    if name in PRESETS and not Path(name).exists():
        return untrained(name, device=device)
    bundled = bundled_codecs()
    if name in bundled and not Path(name).exists():
        return load_codec(bundled[name], device)
    if Path(name).exists():
        return load_codec(name, device)
    choices = ", ".join(dict.fromkeys(["default", *bundled, *PRESETS, *ENCODEC_NAMES]))
    raise CheckpointError(f"unknown codec '{name}': not a file or folder, nor one of: {choices}")


def untrained(preset: str = DEFAULT_PRESET, seed: int = 0, device: str | torch.device = "cpu",
              label: str | None = None) -> RVQCodec:
    """A codec with deterministic random weights (same seed, same weights, same fingerprint)."""
    warnings.warn(
        f"{label or f'codec {preset!r}'} is untrained (random weights, seed {seed}): its tokens and audio carry no "
        "meaning until trained weights are loaded",
        UntrainedCodecWarning,
        stacklevel=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = RVQCodec(PRESETS[preset])
        codec.quantizer.randomize_codebooks()
    codec.trained = False
    return codec.to(device).eval()


def _parse_header(raw: str | None, where: Path) -> dict:
    if raw is None:
        raise CheckpointError(f"{where}: not a tokenlm codec checkpoint (no 'tokenlm' metadata)")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: corrupt checkpoint metadata ({e})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{where}: format is {header.get('format')!r}, expected {FORMAT!r}")
    if int(header.get("version", 0)) > VERSION:
        raise CheckpointError(f"{where}: checkpoint version {header['version']} is newer than this tokenlm "
                              f"(reads up to {VERSION}); upgrade tokenlm")
    if header.get("backend") != "rvq" or "config" not in header:
        raise CheckpointError(f"{where}: unsupported codec backend {header.get('backend')!r}")
    return header


def _fill_training_statistics(state: dict[str, torch.Tensor]) -> None:
    """Stand-ins for the EMA statistics an inference-only checkpoint leaves out (unit counts)."""
    for key in [k for k in state if k.endswith("._codebook.embed")]:
        prefix = key[: -len("embed")]
        embed = state[key]
        state.setdefault(prefix + "embed_avg", embed.clone())
        state.setdefault(prefix + "cluster_size", torch.ones(embed.shape[:-1], dtype=embed.dtype))


def _assign(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"{where}: weights do not match the config: {', '.join(parts)}")
    for k, t in expected.items():
        if tuple(t.shape) != tuple(state[k].shape):
            raise CheckpointError(f"{where}: config mismatch: '{k}' has shape {tuple(state[k].shape)} "
                                  f"but the config needs {tuple(t.shape)}")
        if state[k].dtype != t.dtype:  # weights stored smaller (float16) compute in the model's dtype
            state[k] = state[k].to(t.dtype)
    model.load_state_dict(state, assign=True)
