"""Speed perturbation of a speech manifest: new voices from the ones you have.

Playing audio ``f`` times faster raises its pitch and its formants by ``f`` and shortens it by
``1/f``; to a recognizer that is a new speaker with a different vocal-tract length, which is why
Kaldi-style recipes copy their training data at 0.9x and 1.1x. tokenlm's synthetic corpus has
only two flite voices in training (both male), so copies at 1.1-1.3x stand in for the
female and higher voices that the held-out test voices include.

:func:`speed_perturb` changes one waveform; :func:`perturb_manifest` writes perturbed copies of
(a selection of) a manifest's utterances with their word times scaled, under a new folder, and
returns the new manifest entries. ``recipes/augment_corpus.py`` is its command line.

Speed perturbation moves pitch and formants together. :func:`respeak_manifest` moves the pitch
alone: it has the utterance's own engine and voice speak its text again with the F0 scaled by a
drawn factor (flite shifts F0 and keeps the voice's spectral envelope), optionally followed by a
speed perturbation. A male voice at 1.6-2x pitch and 1.1-1.2x speed is as near as these engines
come to a female one.

:func:`warp_timbre` moves the formants alone: the spectral envelope (cepstrally smoothed) is
warped along frequency (vocal-tract length perturbation) and tilted and equalised at random, while
the harmonics, and so the pitch, and every time stay where they were. :func:`warp_manifest`
writes such copies with the word times unchanged.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from ..audio import audio_info, load_audio, resample, save_audio
from ..errors import AudioError, TokenLMError

__all__ = ["speed_perturb", "perturb_entry", "perturb_manifest", "choose_factors", "respeak_plan", "respeak_manifest",
           "warp_timbre", "choose_timbre", "warp_entry", "warp_manifest"]

FACTOR_STEP = 0.01  # factors are rounded to this, so the resampling ratio stays a small fraction
MIN_FACTOR, MAX_FACTOR = 0.5, 2.0


def _check_factor(factor: float) -> float:
    if not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise TokenLMError(f"speed factor {factor} out of range [{MIN_FACTOR}, {MAX_FACTOR}]")
    return round(round(factor / FACTOR_STEP) * FACTOR_STEP, 2)


def speed_perturb(wav: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
    """``wav`` ``[..., T]`` played ``factor`` times faster: ``round(T / factor)`` samples at the
    same sample rate, pitch and formants multiplied by ``factor`` (band-limited resampling)."""
    factor = _check_factor(factor)
    steps = round(factor / FACTOR_STEP)  # resample from rate*factor to rate, both integers
    unit = sample_rate * FACTOR_STEP
    if abs(unit - round(unit)) > 1e-9:
        raise TokenLMError(f"sample rate {sample_rate} is not a multiple of {round(1 / FACTOR_STEP)}")
    unit = round(unit)
    if steps == round(1 / FACTOR_STEP):
        return wav.clone()
    return resample(wav, steps * unit, sample_rate)


def _rng(seed: int, key: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def choose_factors(
    utt_id: str,
    seed: int,
    factors: Sequence[float] | None = None,
    factor_range: tuple[float, float] | None = None,
    copies: int = 1,
) -> list[float]:
    """The speed factors of one utterance's copies: every one of ``factors``, or ``copies``
    distinct factors drawn uniformly from ``factor_range`` on a 0.01 grid (a function of ``seed``
    and the id alone)."""
    if (factors is None) == (factor_range is None):
        raise TokenLMError("give either a list of speed factors or a range to draw them from")
    if factors is not None:
        out = [_check_factor(float(f)) for f in factors]
    else:
        lo, hi = (float(x) for x in factor_range)
        if not lo <= hi:
            raise TokenLMError(f"speed range {lo}..{hi} is empty")
        if copies < 1:
            raise TokenLMError(f"copies must be at least 1, got {copies}")
        _check_factor(lo), _check_factor(hi)
        grid = range(math.ceil(lo / FACTOR_STEP - 1e-9), math.floor(hi / FACTOR_STEP + 1e-9) + 1)
        if not grid:
            raise TokenLMError(f"speed range {lo}..{hi} holds no factor on the {FACTOR_STEP} grid")
        # distinct factors (no two copies alike), as many as asked or as the grid holds
        out = [_check_factor(k * FACTOR_STEP) for k in _rng(seed, utt_id).sample(grid, min(copies, len(grid)))]
    seen: list[float] = []
    for f in out:  # two copies at one factor would be the same file
        if f not in seen:
            seen.append(f)
    return seen


def _suffix(factor: float) -> str:
    return f"sp{factor:.2f}"


def _write_changed(entry: dict, audio_path: Path, change: Callable[[torch.Tensor], torch.Tensor],
                   overwrite: bool) -> None:
    """Write ``change(entry's audio)`` to ``audio_path`` unless the file is there (or ``overwrite``)."""
    if overwrite or not audio_path.is_file():
        wav, file_sr = load_audio(entry["audio"])
        if file_sr != int(entry["sample_rate"]):
            raise AudioError(f"{entry['audio']}: sample rate {file_sr}, the manifest says {entry['sample_rate']}")
        save_audio(audio_path, change(wav), file_sr)


def perturb_entry(entry: dict, factor: float, audio_path: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write ``entry``'s audio at ``factor`` speed to ``audio_path`` and return its manifest entry
    (id and voice get a ``+spF.FF`` suffix, word times and duration are scaled; the source id
    and the factor are kept as ``source`` and ``speed``). An existing file is reused unless
    ``overwrite``."""
    factor = _check_factor(factor)
    sr = int(entry["sample_rate"])
    audio_path = Path(audio_path)
    _write_changed(entry, audio_path, lambda wav: speed_perturb(wav, factor, sr), overwrite)
    duration = audio_info(audio_path)["num_samples"] / sr
    words = []
    for w in entry.get("words") or []:
        start, end = round(w["start"] / factor, 4), round(w["end"] / factor, 4)
        words.append({**w, "start": min(start, duration), "end": min(end, duration)})
    out = {k: v for k, v in entry.items() if k not in ("id", "audio", "words", "voice", "duration")}
    out.update(
        id=f"{entry['id']}+{_suffix(factor)}",
        audio=str(audio_path.resolve()),
        words=words,
        voice=f"{entry['voice']}+{_suffix(factor)}",
        duration=round(duration, 6),
        source=entry["id"],
        speed=factor,
    )
    return out


def perturb_manifest(
    entries: Iterable[dict],
    out_dir: str | os.PathLike,
    *,
    factors: Sequence[float] | None = None,
    factor_range: tuple[float, float] | None = None,
    copies: int = 1,
    seed: int = 0,
    select: Callable[[dict], bool] | None = None,
    keep_original: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[dict]:
    """Speed-perturbed copies of the selected ``entries`` (read by
    :func:`~tokenlm.data.manifest.read_manifest`), written under ``out_dir/audio/<split>/``.

    Returns the new entries (plus the unperturbed selection first when ``keep_original``), ready
    for :func:`~tokenlm.data.manifest.write_manifest`. Files already there are reused, so an
    interrupted run continues where it stopped. ``progress`` wraps the loop (e.g. ``tqdm``)."""
    out_dir = Path(out_dir)
    chosen = [e for e in entries if select is None or select(e)]
    if not chosen:
        raise TokenLMError("no utterance matches the selection")
    out: list[dict] = list(chosen) if keep_original else []
    loop = progress(chosen) if progress is not None else chosen
    for entry in loop:
        for f in choose_factors(entry["id"], seed, factors, factor_range, copies):
            name = f"{entry['id']}+{_suffix(f)}.wav"
            out.append(perturb_entry(entry, f, out_dir / "audio" / entry.get("split", "train") / name))
    return out


def _pitch_suffix(pitch: float) -> str:
    return f"ps{pitch:.2f}"


def respeak_plan(entry: dict, seed: int, pitch_range: tuple[float, float],
                 rate_range: tuple[float, float] = (0.9, 1.15)) -> dict:
    """The synthesis plan (:func:`tokenlm.data.corpus.render_utterance`) that speaks ``entry``'s text
    again with its engine and voice at a pitch drawn from ``pitch_range`` (a function of ``seed``
    and the id alone)."""
    from .corpus import LEVEL_DB, SILENCE

    if entry.get("engine") not in ("flite", "espeak-ng"):
        raise TokenLMError(f"{entry['id']}: engine {entry.get('engine')!r} cannot speak it again "
                           "(only synthetic flite / espeak-ng utterances)")
    lo, hi = (float(x) for x in pitch_range)
    if not 0.5 <= lo <= hi <= 3.0:
        raise TokenLMError(f"pitch range {lo}..{hi}: give 0.5 <= LO <= HI <= 3")
    rng = _rng(seed, "respeak:" + entry["id"])
    pitch = round(rng.uniform(lo, hi), 2)
    return {
        "id": f"{entry['id']}+{_pitch_suffix(pitch)}",
        "split": entry.get("split", "train"),
        "text": entry["text"],
        "engine": entry["engine"],
        "voice": entry["voice"],
        "rate": round(rng.uniform(*rate_range), 3),
        "pitch": pitch,
        "level_db": round(rng.uniform(*LEVEL_DB), 2),
        "lead": round(rng.uniform(*SILENCE), 3),
        "trail": round(rng.uniform(*SILENCE), 3),
        "noise_seed": rng.getrandbits(31),
    }


def _sidecar(audio_path: str | os.PathLike) -> Path:
    return Path(audio_path).with_suffix(".json")


def _respeak_one(job: tuple[dict, dict, float | None, str]) -> dict | str:
    """Worker: render one plan, speed-perturb it, write the audio and its entry (a ``.json`` beside
    it, written last: a run that resumes trusts a file only with it). Returns the entry, or an
    error line."""
    import json

    from ..fileio import atomic_write
    from .corpus import SAMPLE_RATE, render_utterance

    entry, plan, factor, audio_path = job
    r = render_utterance(plan)
    if not r["ok"]:
        return f"{plan['id']}: {r['error']}"
    wav = torch.from_numpy(r["samples"])[None]
    words = r["words"]
    if factor is not None:
        wav = speed_perturb(wav, factor, SAMPLE_RATE)
        words = [{**w, "start": round(w["start"] / factor, 4), "end": round(w["end"] / factor, 4)} for w in words]
    duration = wav.shape[-1] / SAMPLE_RATE
    words = [{**w, "start": min(w["start"], duration), "end": min(w["end"], duration)} for w in words]
    save_audio(audio_path, wav, SAMPLE_RATE)
    suffix = _pitch_suffix(plan["pitch"]) + (f"+{_suffix(factor)}" if factor is not None else "")
    out = {k: v for k, v in entry.items() if k not in ("id", "audio", "words", "voice", "duration", "speed")}
    out.update(id=f"{entry['id']}+{suffix}", audio=str(Path(audio_path).resolve()), words=words,
               voice=f"{entry['voice']}+{suffix}", duration=round(duration, 6), source=entry["id"],
               pitch=plan["pitch"], rate=plan["rate"], sample_rate=SAMPLE_RATE)
    if factor is not None:
        out["speed"] = factor
    text = json.dumps(out)
    atomic_write(_sidecar(audio_path), lambda tmp: Path(tmp).write_text(text))
    return out


def respeak_manifest(
    entries: Iterable[dict],
    out_dir: str | os.PathLike,
    *,
    pitch_range: tuple[float, float],
    factor_range: tuple[float, float] | None = None,
    seed: int = 0,
    select: Callable[[dict], bool] | None = None,
    workers: int = 2,
    progress: Callable[[Iterable], Iterable] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """The selected synthetic ``entries`` spoken again at a drawn pitch (and then, with
    ``factor_range``, played at a drawn speed), written under ``out_dir/audio/<split>/``.

    Returns the new entries; an utterance the engine fails on is reported through ``log`` and
    skipped. Utterances written by an earlier run are reused (an interrupted run continues).
    ``workers`` processes synthesize (0: this process); ``progress(iterable, total)`` wraps the loop."""
    import json

    out_dir = Path(out_dir)
    chosen = [e for e in entries if select is None or select(e)]
    if not chosen:
        raise TokenLMError("no utterance matches the selection")
    jobs = []
    for e in chosen:
        plan = respeak_plan(e, seed, pitch_range)
        factor = None
        if factor_range is not None:
            factor = choose_factors(plan["id"], seed, factor_range=factor_range)[0]
        name = plan["id"] + (f"+{_suffix(factor)}" if factor is not None else "") + ".wav"
        jobs.append((e, plan, factor, str(out_dir / "audio" / plan["split"] / name)))
    for split in {j[1]["split"] for j in jobs}:
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
    results: dict[str, dict | str] = {}
    todo = []
    for j in jobs:
        side = _sidecar(j[3])
        if side.is_file() and Path(j[3]).is_file():
            results[j[3]] = json.loads(side.read_text())
        else:
            todo.append(j)
    if workers > 0 and len(todo) > 1:
        import multiprocessing as mp

        from .corpus import _init_worker

        with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            it = pool.imap(_respeak_one, todo, chunksize=8)
            for j, r in zip(todo, progress(it, len(todo)) if progress else it):
                results[j[3]] = r
    else:
        for j in progress(todo, len(todo)) if progress else todo:
            results[j[3]] = _respeak_one(j)
    out = []
    for j in jobs:
        r = results[j[3]]
        if isinstance(r, str):
            if log:
                log(f"skipped {r}")
            continue
        out.append(r)
    return out


MAX_GAIN_DB = 24.0  # a timbre filter never boosts or cuts a bin by more than this


def _envelope(logmag: torch.Tensor, lifter: int) -> torch.Tensor:
    """Cepstrally smoothed log-magnitude ``[..., F]`` (quefrencies below ``lifter`` samples)."""
    cep = torch.fft.irfft(logmag, dim=-1)
    keep = torch.zeros(cep.shape[-1], dtype=cep.dtype)
    keep[:lifter] = 1.0
    keep[-lifter + 1:] = 1.0
    return torch.fft.rfft(cep * keep, dim=-1).real


def _warp_source(freqs: torch.Tensor, alpha: float, nyquist: float) -> torch.Tensor:
    """For each output frequency, the input frequency a piecewise-linear VTLP warp brings there
    (``f -> alpha f`` up to a knee, then a straight line to Nyquist, which stays put)."""
    knee = 0.8 * nyquist * min(1.0, 1.0 / alpha)
    src = torch.linspace(0.0, nyquist, 2049, dtype=torch.float64)
    dst = torch.where(src <= knee, alpha * src,
                      alpha * knee + (nyquist - alpha * knee) * (src - knee) / (nyquist - knee))
    # invert the monotone map by linear interpolation of (dst -> src)
    idx = torch.searchsorted(dst, freqs.double().clamp(0, nyquist)).clamp(1, len(dst) - 1)
    x0, x1, y0, y1 = dst[idx - 1], dst[idx], src[idx - 1], src[idx]
    w = ((freqs.double() - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return (y0 + w * (y1 - y0)).to(freqs.dtype)


def warp_timbre(wav: torch.Tensor, alpha: float, sample_rate: int, *, tilt_db: float = 0.0,
                bumps: Sequence[tuple[float, float]] = (), n_fft: int = 512) -> torch.Tensor:
    """``wav [..., T]`` with its formants moved by ``alpha`` (> 1: a shorter vocal tract) and its
    timbre reshaped, the pitch and the length kept.

    Each STFT frame is multiplied by ``warped envelope / envelope`` (log-magnitude envelopes from a
    cepstral lifter of 2 ms, short of any voice's pitch period), by a tilt of ``tilt_db`` dB per
    octave around 1 kHz and by ``bumps`` (``(hz, gain_db)``: one-octave raised-cosine peaks);
    the gain is clipped to +-24 dB and the result keeps the input's RMS level."""
    if not 0.5 <= alpha <= 2.0:
        raise TokenLMError(f"formant factor {alpha} out of range [0.5, 2.0]")
    if wav.shape[-1] < n_fft:
        return wav.clone()
    shape = wav.shape
    x = wav.reshape(-1, shape[-1]).float()
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)  # [C, F, N]
    mag = spec.abs().transpose(1, 2)  # [C, N, F]
    floor = mag.amax().clamp_min(1e-8) * 1e-5
    env = _envelope(torch.log(mag.clamp_min(floor)), max(2, int(0.002 * sample_rate)))
    nyquist = sample_rate / 2
    freqs = torch.linspace(0.0, nyquist, mag.shape[-1])
    pos = _warp_source(freqs, alpha, nyquist) / nyquist * (mag.shape[-1] - 1)
    lo = pos.floor().long().clamp(0, mag.shape[-1] - 1)
    hi = (lo + 1).clamp(max=mag.shape[-1] - 1)
    frac = pos - lo
    warped = env[..., lo] * (1 - frac) + env[..., hi] * frac
    gain_db = (warped - env) * (20 / math.log(10))
    octaves = torch.log2(freqs.clamp_min(62.5) / 1000.0)
    gain_db = gain_db + tilt_db * octaves
    for hz, db in bumps:
        d = (octaves - math.log2(hz / 1000.0)).abs()
        gain_db = gain_db + db * torch.where(d < 0.5, 0.5 * (1 + torch.cos(2 * math.pi * d)), torch.zeros_like(d))
    gain = 10 ** (gain_db.clamp(-MAX_GAIN_DB, MAX_GAIN_DB) / 20)
    y = torch.istft(spec * gain.transpose(1, 2), n_fft, hop_length=n_fft // 4, window=window, length=shape[-1])
    rms_in, rms_out = x.pow(2).mean().sqrt(), y.pow(2).mean().sqrt().clamp_min(1e-12)
    y = y * (rms_in / rms_out)
    peak = y.abs().max()
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.reshape(shape).to(wav.dtype)


def choose_timbre(utt_id: str, seed: int, alpha_range: tuple[float, float], tilt: float = 3.0,
                  eq_db: float = 6.0, bumps: int = 2) -> dict:
    """The timbre of one utterance's copy (a function of ``seed`` and the id alone): a formant
    factor from ``alpha_range`` (0.01 grid), a tilt within +-``tilt`` dB/octave and ``bumps``
    peaks of up to +-``eq_db`` dB at 300-5000 Hz."""
    lo, hi = (float(x) for x in alpha_range)
    if not 0.5 <= lo <= hi <= 2.0:
        raise TokenLMError(f"formant range {lo}..{hi}: give 0.5 <= LO <= HI <= 2")
    rng = _rng(seed, "timbre:" + utt_id)
    return {
        "alpha": round(rng.uniform(lo, hi), 2),
        "tilt_db": round(rng.uniform(-tilt, tilt), 2),
        "bumps": [(round(300 * (5000 / 300) ** rng.random()), round(rng.uniform(-eq_db, eq_db), 1))
                  for _ in range(bumps)],
    }


def _timbre_suffix(t: dict) -> str:
    return f"vt{t['alpha']:.2f}"


def warp_entry(entry: dict, timbre: dict, audio_path: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write ``entry``'s audio through :func:`warp_timbre` (``timbre`` from :func:`choose_timbre`)
    to ``audio_path`` and return its manifest entry: id and voice get a ``+vtA.AA`` suffix, the
    word times stay, ``source`` and ``timbre`` are recorded. An existing file is reused unless
    ``overwrite``."""
    sr = int(entry["sample_rate"])
    audio_path = Path(audio_path)
    _write_changed(entry, audio_path, lambda wav: warp_timbre(wav, timbre["alpha"], sr, tilt_db=timbre["tilt_db"],
                                                              bumps=timbre["bumps"]), overwrite)
    suffix = _timbre_suffix(timbre)
    out = {k: v for k, v in entry.items() if k not in ("id", "audio", "voice")}
    out.update(id=f"{entry['id']}+{suffix}", audio=str(audio_path.resolve()), voice=f"{entry['voice']}+{suffix}",
               source=entry["id"], timbre={**timbre, "bumps": [list(b) for b in timbre["bumps"]]})
    return out


def warp_manifest(
    entries: Iterable[dict],
    out_dir: str | os.PathLike,
    *,
    alpha_range: tuple[float, float],
    tilt: float = 3.0,
    eq_db: float = 6.0,
    seed: int = 0,
    select: Callable[[dict], bool] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[dict]:
    """Timbre-warped copies (:func:`warp_timbre`, drawn by :func:`choose_timbre`) of the selected
    ``entries``, written under ``out_dir/audio/<split>/``; files already there are reused."""
    out_dir = Path(out_dir)
    chosen = [e for e in entries if select is None or select(e)]
    if not chosen:
        raise TokenLMError("no utterance matches the selection")
    out = []
    for entry in progress(chosen) if progress is not None else chosen:
        t = choose_timbre(entry["id"], seed, alpha_range, tilt, eq_db)
        name = f"{entry['id']}+{_timbre_suffix(t)}.wav"
        out.append(warp_entry(entry, t, out_dir / "audio" / entry.get("split", "train") / name))
    return out
