"""LM checkpoints: a folder with ``model.safetensors`` (config in its metadata), ``config.json`` and
``tokenizer.model``, and optionally ``words.arpa.gz`` (an ASR's word language model, which its beam
search uses, :mod:`tokenlm.lm.wordlm`) and ``codec/`` (a TTS's own codec: the codec it was trained on
with the decoder fine-tuned on its voice; same encoder and codebooks, so the same codes)::

    {"format": "tokenlm-lm", "version": 1, "task": "asr", "config": {...LMConfig...},
     "codec": {"name": "default", "fingerprint": "...", "num_codebooks": 8},
     "tokenizer": "<digest>", "trained": true, ...}

:func:`load_lm` takes a folder, a weights file, or the name of a bundled model (``"asr"``,
``"tts"``); every way a checkpoint can be broken raises :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError, TokenLMError
from ..fileio import atomic_write
from .model import LMConfig, TokenLM
from .tokenizer import PhoneTokenizer, TextTokenizer, load_tokenizer

__all__ = ["save_lm", "load_lm", "LoadedLM", "PRETRAINED_DIR", "WORD_LM", "VOICE_CODEC", "bundled_models",
           "InterimModelWarning"]

FORMAT, VERSION = "tokenlm-lm", 1
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.model"
WORD_LM = "words.arpa.gz"
VOICE_CODEC = "codec"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


class InterimModelWarning(UserWarning):
    """The model works end to end but is not trained to its quality target yet (its note says how far)."""


@dataclass
class LoadedLM:
    model: TokenLM
    tokenizer: TextTokenizer | PhoneTokenizer
    header: dict = field(default_factory=dict)
    folder: Path | None = None  # where it was read from

    @property
    def word_lm_path(self) -> Path | None:
        """The checkpoint's word language model (``words.arpa.gz``), if it ships one."""
        p = self.folder / WORD_LM if self.folder is not None else None
        return p if p is not None and p.is_file() else None

    @property
    def codec_path(self) -> Path | None:
        """The checkpoint's own codec folder (``codec/``: a decoder adapted to its voice), if it ships one."""
        p = self.folder / VOICE_CODEC if self.folder is not None else None
        return p if p is not None and (p / WEIGHTS).is_file() else None

    @property
    def task(self) -> str:
        return self.header.get("task", "")

    @property
    def codec_info(self) -> dict:
        return self.header.get("codec", {})


def bundled_models() -> list[str]:
    return sorted(p.name for p in PRETRAINED_DIR.glob("*") if (p / WEIGHTS).exists())


def save_lm(model: TokenLM, path: str | os.PathLike, tokenizer: TextTokenizer | PhoneTokenizer, *, task: str, codec: dict,
            trained: bool = True, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write an LM checkpoint folder atomically, file by file. ``dtype`` (e.g. float16) stores the
    floating-point weights smaller; they load back in float32."""
    from safetensors.torch import save_file

    from .quantize import is_quantized

    if is_quantized(model):
        raise CheckpointError("an int8-quantized model cannot be saved: save the float model and quantize "
                              "after loading (load_lm(..., quantize='int8'))")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, "task": task, "config": model.config.to_dict(),
              "codec": codec, "tokenizer": tokenizer.digest, "trained": trained, **(extra or {})}
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tokenizer.save(path / TOKENIZER)
    atomic_write(path / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"tokenlm": json.dumps(header)}))
    atomic_write(path / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(header, indent=2) + "\n"))
    return path


def _resolve(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if not p.exists() and isinstance(name_or_path, str) and "/" not in name_or_path:
        bundled = PRETRAINED_DIR / name_or_path
        if (bundled / WEIGHTS).exists():
            return bundled / WEIGHTS
        raise CheckpointError(f"no LM checkpoint or bundled model named '{name_or_path}' "
                              f"(bundled: {', '.join(bundled_models()) or 'none'}); train one with "
                              "recipes/train_lm.py and pass its model/ folder")
    if p.is_dir():
        p = p / WEIGHTS
    if not p.exists():
        raise CheckpointError(f"{p}: no such LM checkpoint")
    return p


def load_lm(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
            quantize: str | None = None) -> LoadedLM:
    """``quantize="int8"``: weight-only int8 inference (see :mod:`tokenlm.lm.quantize`)."""
    from safetensors import safe_open

    from .quantize import QUANTIZE_MODES, quantize_lm

    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise TokenLMError(f"unknown quantization {quantize!r}: choose from {', '.join(QUANTIZE_MODES)}")

    wpath = _resolve(name_or_path)
    try:
        with safe_open(str(wpath), "pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors' own error types
        msg = str(e)
        why = "truncated or incomplete" if "incomplete" in msg.lower() or "too small" in msg.lower() \
            or "invalid" in msg.lower() else msg
        raise CheckpointError(f"{wpath}: cannot read weights ({why})") from None
    try:
        header = json.loads(meta["tokenlm"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{wpath}: not a tokenlm LM checkpoint (no tokenlm metadata)") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{wpath}: not a tokenlm LM checkpoint (format {header.get('format')!r})")
    if header.get("version", 0) > VERSION:
        raise CheckpointError(f"{wpath}: written by a newer tokenlm (version {header['version']}); upgrade")
    try:
        cfg = LMConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{wpath}: bad LM config ({e})") from None
    tok_path = wpath.parent / TOKENIZER
    tokenizer = load_tokenizer(tok_path)
    if tokenizer.digest != header.get("tokenizer"):
        raise CheckpointError(f"{tok_path}: tokenizer does not match the one the model was trained with")
    with torch.device("meta"):
        model = TokenLM(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{wpath}: {len(missing)} missing and {len(unexpected)} unexpected weights "
                              f"(e.g. {(missing + unexpected)[:3]}): config and weights do not match")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{wpath}: weight {k} has shape {tuple(v.shape)}, the config says "
                                  f"{tuple(expected[k].shape)}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, assign=True)
    model.start_ids = torch.tensor(model.streams.start_ids)  # non-persistent buffer left on meta
    if header.get("interim"):
        import warnings

        warnings.warn(InterimModelWarning(f"{name_or_path}: an interim {header.get('task')} model: "
                                          f"{header.get('note') or 'not trained to its target yet'}"), stacklevel=2)
    model = model.to(device).eval()
    if quantize:
        quantize_lm(model, quantize)
    return LoadedLM(model, tokenizer, header, wpath.parent)
