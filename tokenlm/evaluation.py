"""Codec quality evaluation: tokenlm's codec at every codebook count against classic codecs.

    tokenlm eval-codec --manifest data/corpus/test.jsonl [--limit N] [--codec NAME|PATH] [--out-dir DIR]
    tokenlm eval-codec --audio FILE_OR_DIR [...]

Every system codes each utterance and is scored against the original, all at 16 kHz mono:

- **STOI** (``pystoi``, classic STOI, not extended): intelligibility, 0..1, higher is better.
- **PESQ-WB** (``pesq``, ITU-T P.862.2 wide-band at 16 kHz): MOS-LQO 1.04..4.64, higher is better.
  PESQ refuses some inputs (``NoUtterancesError`` on silence, too short a signal): such a
  score counts as a failure, is left out of the averages and reported.
- **SI-SDR** (dB, higher is better): scale-invariant signal-to-distortion ratio of the
  zero-mean signals, ``10 log10(|a r|^2 / |a r - d|^2)`` with ``a = <d, r> / <r, r>``.
  It rewards waveform (phase) fidelity: parametric codecs such as Codec 2 score far below
  0 dB however good they sound.
- **log-mel distance** (lower is better): ``mean |ln(M_ref + 1e-5) - ln(M_deg + 1e-5)|`` over
  all mel bins and frames, where ``M`` is the magnitude (power 1) mel spectrogram of
  ``torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=1024,
  hop_length=256, n_mels=80, f_min=0, f_max=8000, power=1.0, center=True)`` (Hann window,
  HTK mel scale, no filter-bank normalisation) on signals in [-1, 1].
- **bitrate** (kbps): nominal, plus two measured from the coded stream (``measured_kbps``: the
  coded file's size over the duration; ``payload_kbps``: without container and headers, which
  only differs for Opus, whose Ogg pages and header packets add about 3 kbps on 3 s clips).

Systems: tokenlm's codec decoding the first ``n`` codebooks, ``n = 1 .. num_codebooks``
(one encode with all codebooks: residual VQ codes of a prefix equal an ``n``-codebook
encode; bitrate ``codec.bitrate(n)``); Codec 2 at 3200, 1300 and 700C (Debian ``codec2``:
``c2enc``/``c2dec`` on 8 kHz raw s16le, so the signal goes 16 -> 8 -> 16 kHz and is
band-limited to 4 kHz, as Codec 2 is); Opus at a nominal 6 kbps (Debian ``opus-tools``:
``opusenc --bitrate 6``, ``opusdec --rate 16000``). A missing tool skips its systems with one
warning.

Alignment: decoded audio is shifted by the system's known delay and trimmed (or zero
padded) to the reference length. tokenlm's codec is causal without lookahead (delay 0);
opusdec removes Opus' pre-skip itself (cross-correlation peak at 0-1 samples). Codec 2's
decoder output lags its input: the log-energy envelopes of 7 real speech clips from
``codec2-examples`` cross-correlate best at 17-24 ms (median 20 ms) for 3200 and 1300 and
27-34 ms (median 31 ms) for 700C, so those are shifted back by 20, 20 and 30 ms
(:data:`CLASSIC_CODECS`). :func:`estimate_delay` re-measures it; the report records the
delay found on the first utterance for every system (``settings.delay_check_ms``).

Averages come with the half-width of a 95% confidence interval (Student t over
utterances), overall and per voice.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from tokenlm.errors import TokenLMError

__all__ = [
    "CLASSIC_CODECS",
    "METRICS",
    "ClassicCodec",
    "EvaluationError",
    "MetricError",
    "Utterance",
    "add_arguments",
    "align",
    "codec2_roundtrip",
    "estimate_delay",
    "evaluate_codec",
    "find_audio",
    "format_table",
    "mel_distance",
    "opus_roundtrip",
    "pesq_wb",
    "plot",
    "read_manifest",
    "run",
    "si_sdr",
    "stoi",
    "write_report",
]

SAMPLE_RATE = 16000  # every metric is computed at this rate, mono
METRICS = ("stoi", "pesq_wb", "si_sdr", "mel_distance")
METRIC_LABELS = {"stoi": "STOI ↑", "pesq_wb": "PESQ-WB ↑", "si_sdr": "SI-SDR dB ↑", "mel_distance": "log-mel L1 ↓"}
MEL_SETTINGS = {
    "sample_rate": SAMPLE_RATE, "n_fft": 1024, "win_length": 1024, "hop_length": 256, "n_mels": 80,
    "f_min": 0.0, "f_max": 8000.0, "power": 1.0, "center": True, "mel_scale": "htk", "norm": None,
}
MEL_EPS = 1e-5
AUDIO_SUFFIXES = (".wav", ".flac")
DEFAULT_OUT_DIR = "runs/codec_eval"


class EvaluationError(TokenLMError, ValueError):
    """Bad input to the evaluation: a manifest, an audio list, signals that cannot be compared."""


class MetricError(EvaluationError):
    """A metric cannot score this pair (PESQ finds no utterance, STOI has too few frames, ...)."""


# ---- signals --------------------------------------------------------------------------------


def _signal(x, what: str = "signal"):
    """Any 1-D-able array (numpy, torch, list; [T], [1, T], [1, 1, T]) -> float64 numpy [T]."""
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim > 1:
        if sum(s > 1 for s in a.shape) > 1:
            raise EvaluationError(f"{what}: expected a mono signal, got shape {a.shape}")
        a = a.reshape(-1)
    if a.ndim == 0 or a.size == 0:
        raise EvaluationError(f"{what}: has no samples")
    if not np.isfinite(a).all():
        raise EvaluationError(f"{what}: contains {int((~np.isfinite(a)).sum())} NaN or infinite sample(s)")
    return a


def _pair(ref, deg):
    r, d = _signal(ref, "reference"), _signal(deg, "degraded signal")
    if r.size != d.size:
        raise EvaluationError(f"signals differ in length ({r.size} vs {d.size} samples); align them first")
    return r, d


def _to_rate(x, sample_rate: int, target: int = SAMPLE_RATE):
    if sample_rate == target:
        return x
    import torch

    from tokenlm.audio import resample

    return resample(torch.from_numpy(x), sample_rate, target).double().numpy()


def align(reference_length: int, degraded, delay: int = 0):
    """Drop the first ``delay`` samples of ``degraded`` (a late output), then trim or zero-pad to
    ``reference_length``. A negative delay pads the start instead. Returns float64 numpy [T]."""
    import numpy as np

    d = _signal(degraded, "degraded signal")
    d = d[delay:] if delay >= 0 else np.concatenate([np.zeros(-delay), d])
    if d.size >= reference_length:
        return d[:reference_length].copy()
    return np.concatenate([d, np.zeros(reference_length - d.size)])


def estimate_delay(ref, deg, sample_rate: int = SAMPLE_RATE, max_ms: float = 100.0) -> float:
    """How late ``deg`` is against ``ref``, in ms (1 ms steps), by cross-correlating log-energy envelopes.

    Envelopes (20 ms windows, 1 ms hop) rather than waveforms, because parametric codecs
    such as Codec 2 keep the spectral envelope but not the phase.
    """
    import numpy as np

    r, d = _signal(ref, "reference"), _signal(deg, "degraded signal")
    n = min(r.size, d.size)
    hop, win = max(1, sample_rate // 1000), max(1, sample_rate // 50)

    def envelope(x):
        frames = (n - win) // hop + 1
        if frames < 1:
            raise EvaluationError(f"signals too short to estimate a delay ({n} samples)")
        idx = np.arange(win)[None, :] + hop * np.arange(frames)[:, None]
        e = np.log((x[:n][idx] ** 2).mean(1) + 1e-8)
        return e - e.mean()

    er, ed = envelope(r), envelope(d)
    best, best_lag = -np.inf, 0
    max_lag = min(int(max_ms), er.size - 1)
    for lag in range(-max_lag, max_lag + 1):
        a, b = (er[: er.size - lag], ed[lag:]) if lag >= 0 else (er[-lag:], ed[: ed.size + lag])
        c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
        if c > best:
            best, best_lag = c, lag
    return float(best_lag * hop * 1000 / sample_rate)


# ---- metrics --------------------------------------------------------------------------------


def stoi(ref, deg, sample_rate: int = SAMPLE_RATE, extended: bool = False) -> float:
    """Short-time objective intelligibility (pystoi), 0..1. Raises MetricError when the signals
    hold too little non-silent speech (pystoi would return 1e-5 with a warning)."""
    from pystoi import stoi as _stoi

    r, d = _pair(ref, deg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(r, d, sample_rate, extended=extended))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise MetricError("STOI: too little non-silent speech to score (needs about 0.4 s)")
    return value


def pesq_wb(ref, deg, sample_rate: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2) at 16 kHz, MOS-LQO 1.04..4.64; other rates are resampled to 16 kHz.

    Raises MetricError when PESQ refuses the input (no utterance found, too short, ...).
    """
    import numpy as np
    from pesq import PesqError
    from pesq import pesq as _pesq

    r, d = _pair(ref, deg)
    r, d = _to_rate(r, sample_rate), _to_rate(d, sample_rate)
    for x, what in ((r, "reference"), (d, "degraded signal")):
        if not np.any(x):  # the pesq package would fail with a ValueError (NaN to int)
            raise MetricError(f"PESQ: the {what} is silent")
    try:
        return float(_pesq(SAMPLE_RATE, r, d, "wb"))
    except (PesqError, ValueError) as e:
        msg = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise MetricError(f"PESQ: {type(e).__name__}: {' '.join(msg.split()) or 'failed'}") from None


def si_sdr(ref, est, eps: float = 1e-12) -> float:
    """Scale-invariant SDR in dB of the zero-mean signals: ``10 log10(|a r|^2 / |a r - e|^2)``,
    ``a = <e, r> / <r, r>``. Identical signals give a very large value (over 100 dB). Raises
    MetricError when either signal is silent (the ratio is undefined)."""
    import numpy as np

    r, e = _pair(ref, est)
    r, e = r - r.mean(), e - e.mean()
    for x, what in ((r, "reference"), (e, "estimate")):
        if not np.any(x):
            raise MetricError(f"SI-SDR: the {what} is silent (or constant)")
    a = np.dot(e, r) / (np.dot(r, r) + eps)
    target = a * r
    noise = e - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


@lru_cache(maxsize=1)
def _mel_transform():
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(**MEL_SETTINGS).double()


def mel_distance(ref, deg, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean absolute difference of natural-log magnitude mel spectrograms (80 mels at 16 kHz,
    see :data:`MEL_SETTINGS`, floor :data:`MEL_EPS`); other rates are resampled to 16 kHz."""
    import torch

    r, d = _pair(ref, deg)
    r, d = _to_rate(r, sample_rate), _to_rate(d, sample_rate)
    mel = _mel_transform()
    with torch.no_grad():
        mr = mel(torch.from_numpy(r))
        md = mel(torch.from_numpy(d))
        return float((torch.log(mr + MEL_EPS) - torch.log(md + MEL_EPS)).abs().mean())


def _score(ref, deg) -> tuple[dict, dict]:
    """All metrics of one pair at 16 kHz: (scores, errors), a failed metric scoring None."""
    scores, errors = {}, {}
    for name, fn in (("stoi", stoi), ("pesq_wb", pesq_wb), ("si_sdr", si_sdr), ("mel_distance", mel_distance)):
        try:
            value = fn(ref, deg)
            if not math.isfinite(value):
                raise MetricError(f"{name}: not a finite number ({value})")
            scores[name] = value
        except EvaluationError as e:  # MetricError, or a decoded signal with NaN/Inf samples
            scores[name], errors[name] = None, str(e)
    return scores, errors


# ---- classic codecs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassicCodec:
    """A classic codec run through its command-line tools."""

    name: str  # system id: "codec2-3200", "opus-6"
    label: str  # for tables and plots
    family: str  # "codec2" or "opus"
    mode: str  # codec2 mode or opus kbps
    kbps: float  # nominal bitrate
    delay_ms: float  # the decoded output lags the input by this much (removed before scoring)
    tools: tuple[str, ...]
    package: str  # Debian package with the tools

    def available(self) -> bool:
        return all(shutil.which(t) for t in self.tools)

    def roundtrip(self, wav, workdir: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
        """Code and decode ``wav`` (mono, ``sample_rate``): (decoded float64 [T'] at ``sample_rate``,
        coded file bytes, payload bytes)."""
        if self.family == "codec2":
            return codec2_roundtrip(wav, self.mode, workdir, sample_rate)
        return opus_roundtrip(wav, float(self.mode), workdir, sample_rate)


CLASSIC_CODECS: tuple[ClassicCodec, ...] = (
    ClassicCodec("codec2-3200", "Codec 2 3200", "codec2", "3200", 3.2, 20.0, ("c2enc", "c2dec"), "codec2"),
    ClassicCodec("codec2-1300", "Codec 2 1300", "codec2", "1300", 1.3, 20.0, ("c2enc", "c2dec"), "codec2"),
    ClassicCodec("codec2-700C", "Codec 2 700C", "codec2", "700C", 0.7, 30.0, ("c2enc", "c2dec"), "codec2"),
    ClassicCodec("opus-6", "Opus 6 kbps", "opus", "6", 6.0, 0.0, ("opusenc", "opusdec"), "opus-tools"),
)
CLASSIC_NAMES = tuple(c.name for c in CLASSIC_CODECS)


def _run_tool(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise EvaluationError(f"{cmd[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise EvaluationError(f"{cmd[0]}: timed out") from None
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout or "").split())[-300:]
        raise EvaluationError(f"{' '.join(cmd)} failed with exit status {proc.returncode}: {msg}")


def codec2_roundtrip(wav, mode: str, workdir: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
    """Codec 2 (``c2enc MODE``/``c2dec MODE``) on 8 kHz raw s16le: (decoded float64 [T'] at
    ``sample_rate``, coded bytes, the same again as payload bytes: the headerless .bit file holds
    just the frames, each padded to whole bytes). The output is not delay-compensated (see
    ClassicCodec.delay_ms)."""
    import numpy as np
    import torch

    from tokenlm.audio import resample

    x = _signal(wav)
    workdir = Path(workdir)
    raw, bits, out = workdir / "c2_in.raw", workdir / f"c2_{mode}.bit", workdir / f"c2_{mode}.raw"
    x8 = resample(torch.from_numpy(x), sample_rate, 8000).numpy()
    np.round(np.clip(x8, -1, 1) * 32767).astype("<i2").tofile(raw)
    _run_tool(["c2enc", mode, str(raw), str(bits)])
    _run_tool(["c2dec", mode, str(bits), str(out)])
    y8 = np.fromfile(out, dtype="<i2").astype(np.float64) / 32768
    y = resample(torch.from_numpy(y8), 8000, sample_rate).numpy()
    size = bits.stat().st_size
    return y, size, size


def opus_roundtrip(wav, kbps: float, workdir: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
    """Opus through opus-tools (``opusenc --bitrate KBPS``, ``opusdec --rate SAMPLE_RATE``):
    (decoded float64 [T'] at ``sample_rate``, Ogg file bytes, Opus audio packet bytes without the
    Ogg pages and the two header packets). opusdec removes the pre-skip."""
    import soundfile as sf

    x = _signal(wav)
    workdir = Path(workdir)
    src, coded, out = workdir / "opus_in.wav", workdir / "opus.opus", workdir / "opus_out.wav"
    sf.write(str(src), x.clip(-1, 1), sample_rate, subtype="PCM_16")
    _run_tool(["opusenc", "--bitrate", f"{kbps:g}", "--quiet", str(src), str(coded)])
    _run_tool(["opusdec", "--rate", str(sample_rate), "--quiet", str(coded), str(out)])
    y, sr = sf.read(str(out), dtype="float64", always_2d=True)
    y = y.mean(1)
    if sr != sample_rate:
        y = _to_rate(y, sr, sample_rate)
    return y, coded.stat().st_size, ogg_payload_bytes(coded, skip_packets=2)


def ogg_payload_bytes(path: str | os.PathLike, skip_packets: int = 0) -> int:
    """Bytes of the packets in an Ogg file (page headers left out), after the first ``skip_packets``
    packets (an Opus stream starts with two header packets, OpusHead and OpusTags)."""
    data = Path(path).read_bytes()
    pos, packets, total, open_packet = 0, 0, 0, False
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise EvaluationError(f"{path}: not an Ogg file (no page at byte {pos})")
        nseg = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + nseg]
        for lace in lacing:
            if packets >= skip_packets:
                total += lace
            open_packet = lace == 255  # a packet ends at a lacing value below 255
            if not open_packet:
                packets += 1
        pos += 27 + nseg + sum(lacing)
    return total


def _tool_versions() -> dict:
    versions = {}
    for pkg in ("codec2", "opus-tools"):
        v = None
        if shutil.which("dpkg-query"):
            try:
                p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True,
                                   timeout=30)
                v = p.stdout.strip() or None if p.returncode == 0 else None
            except (OSError, subprocess.TimeoutExpired):
                v = None
        versions[pkg] = v
    if shutil.which("opusenc"):
        try:
            p = subprocess.run(["opusenc", "--version"], capture_output=True, text=True, timeout=30)
            versions["opusenc"] = (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    import importlib.metadata as md

    for pkg in ("tokenlm", "torch", "torchaudio", "numpy", "pystoi", "pesq", "matplotlib"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return versions


# ---- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    path: str
    voice: str = "unknown"
    id: str | None = None
    text: str | None = None  # the transcript, for the intelligibility score (--wer)

    @property
    def name(self) -> str:
        return self.id or Path(self.path).stem


def read_manifest(path: str | os.PathLike, limit: int | None = None) -> list[Utterance]:
    """A JSONL manifest: one object per line with "audio" (relative to the manifest's folder, or
    absolute) and "voice" ("unknown" when absent), optionally "id". Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such manifest" if not path.exists() else f"{path}: not a file")
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvaluationError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("audio"), str) or not obj["audio"]:
                raise EvaluationError(f"{path}:{lineno}: expected an object with an \"audio\" path")
            audio = Path(obj["audio"])
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise EvaluationError(f"{path}:{lineno}: audio file {audio} does not exist")
            uid = obj.get("id")
            text = obj.get("text")
            items.append(Utterance(str(audio), str(obj.get("voice") or "unknown"), None if uid is None else str(uid),
                                   text if isinstance(text, str) and text.strip() else None))
    if not items:
        raise EvaluationError(f"{path}: manifest has no utterances")
    return items


def find_audio(paths, limit: int | None = None) -> list[Utterance]:
    """Audio files given directly, or every .wav/.flac under the folders given (sorted).
    The voice is the name of the folder holding the file."""
    items = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise EvaluationError(f"{p}: no {'/'.join(AUDIO_SUFFIXES)} files in this folder")
        elif p.is_file():
            files = [p]
        else:
            raise EvaluationError(f"{p}: no such file or directory")
        items.extend(Utterance(str(f), f.parent.name or "unknown") for f in files)
    if not items:
        raise EvaluationError("no audio files given")
    return items[:limit] if limit is not None else items


# ---- evaluation -----------------------------------------------------------------------------


def _summary(values: list) -> dict:
    import numpy as np

    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "ci95": None, "std": None, "n": 0}
    if v.size < 2:
        return {"mean": float(v.mean()), "ci95": None, "std": None, "n": 1}
    from scipy.stats import t

    sd = float(v.std(ddof=1))
    return {"mean": float(v.mean()), "ci95": float(t.ppf(0.975, v.size - 1) * sd / math.sqrt(v.size)),
            "std": sd, "n": int(v.size)}


def _resolve_codec(codec, weights, device):
    if isinstance(codec, str | os.PathLike):
        from tokenlm.codecs import load

        source = str(codec)
        codec = load(source, weights=weights, device=device)
    else:
        source = getattr(codec, "name", "codec")
    return codec.eval(), source


def evaluate_codec(
    utterances,
    codec="default",
    *,
    codebooks=None,
    classic=None,
    weights=None,
    device: str = "cpu",
    progress: bool = True,
    intelligibility: bool = False,
) -> dict:
    """Score tokenlm's codec at each codebook count and the classic codecs on ``utterances``.

    ``utterances``: :class:`Utterance` objects or audio paths (voice = the file's folder name).
    ``codec``: a Codec, or a name/path for :func:`tokenlm.codecs.load` (``weights`` for EnCodec).
    ``codebooks``: codebook counts to score (default ``1 .. num_codebooks``).
    ``classic``: names from :data:`CLASSIC_NAMES` (default all; ``[]`` for none); systems whose
    tools are missing are skipped with one warning each.
    ``intelligibility``: also transcribe the original and every system's output with pocketsphinx
    (its bundled US-English model; an independent judge) and give each system's word error rate
    against the utterances' ``text`` (every utterance needs one): ``wer`` per system and
    ``settings.wer_original``, the judge's own error on the unprocessed audio.
    Returns a JSON-serialisable dict: ``settings``, ``date``, ``versions``, ``systems`` (averages
    with 95% CI half-widths, per voice), ``utterances`` (every score), ``failures``, ``skipped``,
    ``timing``.
    """
    import torch
    from tqdm import tqdm

    from tokenlm.audio import convert_channels, load_audio, resample

    utts = [u if isinstance(u, Utterance) else Utterance(str(u), Path(u).parent.name or "unknown")
            for u in utterances]
    if not utts:
        raise EvaluationError("no utterances to evaluate")
    judge = None
    if intelligibility:
        missing = [u.name for u in utts if not u.text]
        if missing:
            raise EvaluationError(f"--wer needs a transcript (\"text\" in the manifest) for every utterance; "
                                  f"{len(missing)} have none (first: {missing[0]})")
        from tokenlm.lm.evaluation import Pocketsphinx

        judge = Pocketsphinx()
    codec, source = _resolve_codec(codec, weights, device)
    qmax = codec.num_codebooks
    ns = list(range(1, qmax + 1)) if codebooks is None else sorted({int(n) for n in codebooks})
    bad = [n for n in ns if not 1 <= n <= qmax]
    if bad or not ns:
        raise EvaluationError(f"codebook counts must be 1..{qmax} for codec '{codec.name}', got {bad or ns}")
    names = list(CLASSIC_NAMES) if classic is None else list(classic)
    unknown = [n for n in names if n not in CLASSIC_NAMES]
    if unknown:
        raise EvaluationError(f"unknown classic codec(s) {', '.join(unknown)}; choose from {', '.join(CLASSIC_NAMES)}")
    chosen, skipped, warned = [], [], set()
    for c in CLASSIC_CODECS:
        if c.name not in names:
            continue
        if c.available():
            chosen.append(c)
            continue
        missing = [t for t in c.tools if not shutil.which(t)]
        reason = f"{'/'.join(missing)} not found (Debian package '{c.package}')"
        skipped.append({"system": c.name, "reason": reason})
        if c.family not in warned:
            warned.add(c.family)
            warnings.warn(f"{reason}: skipping the {c.family} systems", stacklevel=2)

    tk = [f"tokenlm-q{n}" for n in ns]
    systems = {
        **{s: {"system": s, "label": f"{codec.name} {n}q", "family": "tokenlm", "codebooks": n,
               "kbps": codec.bitrate(n) / 1000, "delay_ms": 0.0} for s, n in zip(tk, ns)},
        **{c.name: {"system": c.name, "label": c.label, "family": c.family, "codebooks": None, "kbps": c.kbps,
                    "delay_ms": c.delay_ms} for c in chosen},
    }
    scores = {s: [] for s in systems}
    coded_bits = {s: 0.0 for s in systems}  # file size
    payload_bits = {s: 0.0 for s in systems}
    coded_seconds = {s: 0.0 for s in systems}
    elapsed = {s: 0.0 for s in systems}
    failures, per_utt, delay_check = [], [], {}
    heard: dict[str, list[str]] = {s: [] for s in ["original", *systems]}
    total_seconds = 0.0
    p = next(codec.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    bits_per_code = math.ceil(math.log2(codec.codebook_size))
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="tokenlm-eval-") as work:
        bar = tqdm(utts, desc="eval-codec", unit="utt", disable=None if progress else True, file=sys.stderr,
                   leave=False)
        for i, u in enumerate(bar):
            wav, _ = load_audio(u.path, sample_rate=SAMPLE_RATE, channels=1)
            ref = wav[0].double().numpy()
            seconds = ref.size / SAMPLE_RATE
            total_seconds += seconds
            outputs = {}

            t0 = time.perf_counter()
            x = convert_channels(resample(wav, SAMPLE_RATE, codec.sample_rate), codec.channels)
            codes = codec.encode(x[None].to(dev), max(ns))
            t_enc = (time.perf_counter() - t0) / len(ns)
            for s, n in zip(tk, ns):
                t0 = time.perf_counter()
                y = codec.decode(codes[:, :n])[0].float().cpu()
                y = resample(convert_channels(y, 1), codec.sample_rate, SAMPLE_RATE)[0]
                bits = codes.shape[-1] * n * bits_per_code  # packed codes, as in a token file's payload
                outputs[s] = (y.double().numpy(), bits, bits)
                elapsed[s] += time.perf_counter() - t0 + t_enc
            for c in chosen:
                t0 = time.perf_counter()
                try:
                    y, nbytes, payload = c.roundtrip(ref, work)
                except EvaluationError as e:
                    failures.append({"system": c.name, "utterance": u.name, "path": u.path, "metric": "codec",
                                     "error": str(e)})
                    outputs[c.name] = None
                else:
                    outputs[c.name] = (y, nbytes * 8, payload * 8)
                elapsed[c.name] += time.perf_counter() - t0

            row = {"id": u.name, "path": u.path, "voice": u.voice, "seconds": seconds, "scores": {}}
            if judge is not None:
                row["text"] = u.text
                row["heard"] = {"original": judge.transcribe(torch.from_numpy(ref).float())}
                heard["original"].append(row["heard"]["original"])
            for s, out in outputs.items():
                if out is None:
                    scores[s].append(dict.fromkeys(METRICS))
                    row["scores"][s] = dict.fromkeys(METRICS)
                    if judge is not None:
                        heard[s].append("")  # no output: every word missed
                        row["heard"][s] = ""
                    continue
                y, bits, payload = out
                coded_bits[s] += bits
                payload_bits[s] += payload
                coded_seconds[s] += seconds
                if i == 0:
                    try:
                        delay_check[s] = estimate_delay(ref, y)
                    except EvaluationError:
                        delay_check[s] = None
                deg = align(ref.size, y, round(systems[s]["delay_ms"] * SAMPLE_RATE / 1000))
                if judge is not None:
                    row["heard"][s] = judge.transcribe(torch.from_numpy(deg).float())
                    heard[s].append(row["heard"][s])
                sc, errs = _score(ref, deg)
                scores[s].append(sc)
                row["scores"][s] = sc
                failures.extend({"system": s, "utterance": u.name, "path": u.path, "metric": m, "error": e}
                                for m, e in errs.items())
            per_utt.append(row)
        bar.close()

    voices = sorted({u.voice for u in utts})
    word_error = None
    if judge is not None:
        from tokenlm.lm.evaluation import wer

        texts = [u.text for u in utts]
        word_error = {s: wer(texts, h) for s, h in heard.items()}
    results = []
    for s, info in systems.items():
        entry = dict(info)
        secs = coded_seconds[s]
        entry["measured_kbps"] = coded_bits[s] / secs / 1000 if secs else None
        entry["payload_kbps"] = payload_bits[s] / secs / 1000 if secs else None
        entry["metrics"] = {m: _summary([sc[m] for sc in scores[s]]) for m in METRICS}
        entry["per_voice"] = {}
        for v in voices:
            idx = [k for k, u in enumerate(utts) if u.voice == v]
            entry["per_voice"][v] = {"n": len(idx), **{
                m: _summary([scores[s][k][m] for k in idx])["mean"] for m in METRICS}}
        if word_error is not None:
            entry["wer"] = word_error[s]
        entry["failures"] = sum(1 for f in failures if f["system"] == s)
        entry["seconds"] = elapsed[s]
        results.append(entry)

    return {
        "settings": {
            "codec": codec.name,
            "codec_source": source,
            "codec_trained": bool(getattr(codec, "trained", True)),
            "codec_fingerprint": codec.fingerprint,
            "codec_sample_rate": codec.sample_rate,
            "num_codebooks": qmax,
            "codebooks": ns,
            "classic": [c.name for c in chosen],
            "device": str(dev),
            "sample_rate": SAMPLE_RATE,
            "num_utterances": len(utts),
            "total_seconds": total_seconds,
            "voices": voices,
            "metrics": {
                "stoi": "pystoi.stoi(ref, deg, 16000, extended=False)",
                "pesq_wb": "pesq.pesq(16000, ref, deg, 'wb') (P.862.2 MOS-LQO)",
                "si_sdr": "10 log10(|a r|^2 / |a r - d|^2), a = <d,r>/<r,r>, zero-mean signals",
                "mel_distance": {"definition": "mean |ln(M_ref + eps) - ln(M_deg + eps)|", "eps": MEL_EPS,
                                 "transform": "torchaudio.transforms.MelSpectrogram", **MEL_SETTINGS},
                "ci95": "Student t half-width over utterances",
            },
            "alignment": "decoded output shifted back by the system's delay_ms, then trimmed or zero-padded "
                         "to the reference length",
            "delay_check_ms": delay_check,
            "delay_check_utterance": utts[0].name,
            "wer_judge": "pocketsphinx (bundled en-us model), corpus WER of normalised words" if judge else None,
            "wer_original": word_error["original"] if word_error else None,
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _tool_versions(),
        "systems": results,
        "utterances": per_utt,
        "failures": failures,
        "skipped": skipped,
        "timing": {"seconds": time.perf_counter() - t_start,
                   "per_system_seconds": {s: elapsed[s] for s in systems}},
    }


# ---- reporting ------------------------------------------------------------------------------


def _cell(summary: dict, digits: int) -> str:
    if summary["mean"] is None:
        return "-"
    text = f"{summary['mean']:.{digits}f}"
    if summary["ci95"] is not None:
        text += f" ± {summary['ci95']:.{digits}f}"
    return text


def _title(result: dict) -> str:
    s = result["settings"]
    trained = "" if s["codec_trained"] else ", untrained"
    return (f"Codec evaluation: {s['codec_source']} ({s['codec']}{trained}) on {s['num_utterances']} utterance(s), "
            f"{s['total_seconds']:.1f} s")


def format_table(result: dict) -> str:
    """The averages as a markdown table (mean ± 95% CI half-width), with notes."""
    digits = {"stoi": 3, "pesq_wb": 2, "si_sdr": 1, "mel_distance": 3}
    with_wer = result["settings"].get("wer_original") is not None
    lines = [f"## {_title(result)}", "",
             "| system | kbps | measured kbps | " + " | ".join(METRIC_LABELS[m] for m in METRICS)
             + (" | WER ↓ |" if with_wer else " |") + " failures |",
             "|---|---:|---:|" + "---:|" * len(METRICS) + ("---:|" if with_wer else "") + "---:|"]
    if with_wer:
        lines.append("| original (no codec) | | | " + " | ".join("" for _ in METRICS)
                     + f" | {100 * result['settings']['wer_original']:.1f}% | |")
    for e in result["systems"]:
        measured = "-"
        if e["measured_kbps"] is not None:
            measured = f"{e['measured_kbps']:.2f}"
            if abs(e["payload_kbps"] - e["measured_kbps"]) > 0.005:
                measured += f" / {e['payload_kbps']:.2f}"
        cells = [_cell(e["metrics"][m], digits[m]) for m in METRICS]
        wer_cell = f" | {100 * e['wer']:.1f}%" if with_wer else ""
        lines.append(f"| {e['label']} | {e['kbps']:.2f} | {measured} | " + " | ".join(cells)
                     + f"{wer_cell} | {e['failures']} |")
    lines += ["", "Metrics at 16 kHz mono, mean ± 95% CI half-width over utterances. kbps: nominal. Measured "
              "kbps: coded size over duration, as `file / payload` where they differ (Opus: the Ogg file, then "
              "its audio packets alone; Codec 2: frames padded to whole bytes; tokenlm: packed codes). "
              "Codec 2 runs at 8 kHz: band-limited to 4 kHz."]
    if with_wer:
        lines.append("WER: intelligibility, the word error rate of pocketsphinx (bundled US-English model) on each "
                     "system's output against the transcripts; the first row is the judge on the original audio.")
    for s in result["skipped"]:
        lines.append(f"Skipped {s['system']}: {s['reason']}.")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str | os.PathLike) -> Path:
    """Two panels, STOI and PESQ-WB against kbps (log scale): tokenlm's codec as a line over its
    codebook counts, each classic codec a labelled marker. Written as PNG (Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from tokenlm.fileio import atomic_write

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    tok = [e for e in result["systems"] if e["family"] == "tokenlm"]
    classic = [e for e in result["systems"] if e["family"] != "tokenlm"]
    markers = {"codec2": "s", "opus": "D"}
    for ax, metric, label in ((axes[0], "stoi", "STOI"), (axes[1], "pesq_wb", "PESQ-WB (MOS-LQO)")):
        pts = [(e["kbps"], e["metrics"][metric]["mean"], e["metrics"][metric]["ci95"] or 0.0, e["codebooks"])
               for e in tok if e["metrics"][metric]["mean"] is not None]
        if pts:
            x, y, err, q = zip(*pts)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color="C0", label=result["settings"]["codec"])
            for xi, yi, qi in zip(x, y, q):
                ax.annotate(f"{qi}q", (xi, yi), textcoords="offset points", xytext=(0, 7), ha="center",
                            fontsize=7, color="C0")
        for k, e in enumerate(classic):
            m = e["metrics"][metric]
            if m["mean"] is None:
                continue
            ax.errorbar([e["kbps"]], [m["mean"]], yerr=[m["ci95"] or 0.0], marker=markers.get(e["family"], "^"),
                        linestyle="none", capsize=3, color=f"C{k + 1}", label=e["label"])
            ax.annotate(e["label"], (e["kbps"], m["mean"]), textcoords="offset points", xytext=(6, -10),
                        fontsize=8, color=f"C{k + 1}")
        ax.set_xscale("log")
        xs = [e["kbps"] for e in result["systems"]]
        if xs:
            ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if min(xs) / 1.5 <= t <= max(xs) * 1.5]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bitrate (kbps, log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    s = result["settings"]
    trained = "" if s["codec_trained"] else ", untrained"
    fig.suptitle(f"codec {s['codec_source']} ({s['codec']}{trained}) vs classic codecs: quality against bitrate, "
                 f"{s['num_utterances']} utterance(s)")
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def write_report(result: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``codec_eval.json``, ``codec_eval.md`` and ``codec_eval.png`` into ``out_dir``."""
    from tokenlm.fileio import atomic_write

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "codec_eval.json", "md": out / "codec_eval.md", "png": out / "codec_eval.png"}
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    atomic_write(paths["json"], lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    table = format_table(result)
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text(table, encoding="utf-8"))
    plot(result, paths["png"])
    return paths


# ---- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from tokenlm.cli import positive_int

    """The arguments of ``tokenlm eval-codec`` and ``recipes/eval_codec.py`` (shared)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", metavar="JSONL",
                     help="JSONL manifest, one {\"audio\": PATH, \"voice\": NAME} per line (paths relative "
                          "to the manifest's folder), e.g. data/corpus/test.jsonl")
    src.add_argument("--audio", nargs="+", metavar="FILE_OR_DIR",
                     help="audio files, or folders searched for .wav/.flac (voice = the file's folder name)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N utterances only")
    parser.add_argument("--codec", default="default",
                        help="tokenlm codec: 'default', a preset, 'encodec_24khz'/'encodec_48khz' or a "
                             "checkpoint folder/.safetensors (default: %(default)s)")
    parser.add_argument("--weights", metavar="PATH", help="pretrained weights for EnCodec codecs")
    parser.add_argument("--codebooks", type=positive_int, nargs="+", metavar="N",
                        help="codebook counts to score (default: 1 .. all)")
    parser.add_argument("--classic", nargs="+", choices=CLASSIC_NAMES, metavar="SYSTEM",
                        help=f"classic codecs to compare with (default: all of {', '.join(CLASSIC_NAMES)})")
    parser.add_argument("--no-classic", action="store_true", help="score tokenlm's codec only")
    parser.add_argument("--device", default="cpu", help="device for tokenlm's codec (default: %(default)s)")
    parser.add_argument("--wer", action="store_true",
                        help="also score intelligibility: pocketsphinx's word error rate on each output "
                             "(needs \"text\" in the manifest)")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR, metavar="DIR",
                        help="where codec_eval.{md,json,png} go (default: %(default)s)")
    return parser


def run(args: argparse.Namespace, codec=None) -> int:
    """``tokenlm eval-codec``: evaluate, print the markdown table, write the report.
    ``codec``: an already loaded codec (else ``args.codec``/``args.weights`` are loaded)."""
    if args.manifest is not None:
        utts = read_manifest(args.manifest, args.limit)
    else:
        utts = find_audio(args.audio, args.limit)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"{out_dir}: exists and is not a folder")
    if codec is None:
        codec, _ = _resolve_codec(args.codec, args.weights, args.device)
    else:
        codec = codec.to(args.device)
    classic = [] if args.no_classic else args.classic
    t0 = time.perf_counter()
    result = evaluate_codec(utts, codec, codebooks=args.codebooks, classic=classic, device=args.device,
                            intelligibility=getattr(args, "wer", False))
    result["settings"]["codec_source"] = args.codec
    result["settings"]["inputs"] = {"manifest": args.manifest, "audio": args.audio, "limit": args.limit}
    paths = write_report(result, out_dir)
    print(format_table(result), end="")
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']} ({time.perf_counter() - t0:.1f} s, "
          f"{result['settings']['total_seconds']:.1f} s of audio)", file=sys.stderr)
    return 0
