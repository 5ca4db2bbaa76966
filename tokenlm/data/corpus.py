"""Build a multi-voice speech corpus offline, with word timings, from espeak-ng and flite.

:func:`build_corpus` writes::

    out_dir/audio/{train,valid,test}/<id>.wav   16 kHz mono 16-bit
    out_dir/{train,valid,test}.jsonl            manifests (see tokenlm.data.manifest)
    out_dir/corpus.json                         settings, counts, hours, voices, failures, tool versions

Everything follows from the seed: the sentence pool (:func:`tokenlm.data.text.load_sentences`)
is shuffled and cut into three disjoint parts, one per split, and each split draws its
utterances (sentence, voice, speaking rate, pitch, level, leading and trailing silence) from
its own random stream, in order. The number of worker processes changes nothing but speed.

Voices are held out whole:

- test: flite ``slt`` and ``rms`` (voices that an independent recognizer such as pocketsphinx
  judges fairly) and the espeak-ng variants :data:`TEST_VARIANTS` in every accent;
- valid: the espeak-ng variants :data:`VALID_VARIANTS` in every accent;
- train: flite ``kal16`` and ``awb`` and every other espeak-ng voice (8 accents, each alone and
  with each remaining variant).

Each utterance is synthesized, trimmed of the engine's own leading and trailing silence,
brought to a random speech level, padded with random silence (word times move with it) and
written. A sentence that fails (an exception, no audio, a word the engine did not speak) is
logged, counted in ``corpus.json`` and skipped. An interrupted build resumes: utterances whose
wav file and manifest line exist are kept, the rest are made again from the same plans. Asking
for more hours later extends a corpus the same way (the plans of a split are one stream).

Reproducibility: the plans (ids, sentences, voices, rates, pitches, levels, silences) depend on
the seed alone, and so does flite's audio. espeak-ng carries a little state from one sentence
to the next inside a process (the phase of its pitch flutter; no API resets it), so its audio,
durations and word times can differ by a few samples with what the process spoke before. Tasks
are therefore dealt to the worker processes in a fixed rotation: running the same command again
(same seed, size and ``workers >= 1``, into an empty folder) gives the same files, byte for byte.
Another ``workers``, an in-process build (``workers=0``) or a resumed build gives the same plans
with espeak-ng audio a few samples apart, and in ``hours`` mode possibly one utterance more or
less at the end of a split.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..audio import save_audio
from ..errors import TokenLMError
from ..fileio import atomic_write
from . import text as text_mod
from . import tts
from .manifest import SPLITS, read_manifest, validate_entry, write_manifest

__all__ = [
    "TEST_FLITE_VOICES",
    "TRAIN_FLITE_VOICES",
    "TEST_VARIANTS",
    "VALID_VARIANTS",
    "voice_splits",
    "split_sentences_for_corpus",
    "plan_utterances",
    "render_utterance",
    "build_corpus",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = tts.SAMPLE_RATE
FORMAT_VERSION = 1
TEST_FLITE_VOICES = ("slt", "rms")
TRAIN_FLITE_VOICES = ("kal16", "awb")
TEST_VARIANTS = ("m6", "f4", "Andrea", "klatt3")
VALID_VARIANTS = ("m5", "f3", "Lee")

# what varies from utterance to utterance (uniform ranges)
PROSODY = {
    "espeak-ng": {"rate": (0.8, 1.25), "pitch": (0.75, 1.25)},
    "flite": {"rate": (0.85, 1.2), "pitch": (0.85, 1.2)},
}
SILENCE = (0.1, 0.4)  # seconds before and after the speech
LEVEL_DB = (-28.0, -18.0)  # RMS of the speech (10 ms frames within 40 dB of the loudest), dBFS
PEAK_DB = -1.0
MAX_FAILED_LISTED = 100


# ---- voices and sentences -------------------------------------------------------------------------


def voice_splits(
    espeak_voices: Sequence[str],
    test_variants: Sequence[str] = TEST_VARIANTS,
    valid_variants: Sequence[str] = VALID_VARIANTS,
    test_flite: Sequence[str] = TEST_FLITE_VOICES,
    train_flite: Sequence[str] = TRAIN_FLITE_VOICES,
) -> dict[str, list[tuple[str, str]]]:
    """Disjoint ``(engine, voice)`` lists per split: held-out variants (in every accent) go to
    test and valid, held-out flite voices to test, everything else to train."""
    overlap = set(test_variants) & set(valid_variants)
    if overlap:
        raise TokenLMError(f"variants {sorted(overlap)} are held out for both test and valid")
    if set(test_flite) & set(train_flite):
        raise TokenLMError(f"flite voices {sorted(set(test_flite) & set(train_flite))} in both test and train")
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for v in espeak_voices:
        variant = v.split("+", 1)[1] if "+" in v else ""
        split = "test" if variant in test_variants else "valid" if variant in valid_variants else "train"
        out[split].append(("espeak-ng", v))
    out["test"] += [("flite", v) for v in test_flite]
    out["train"] += [("flite", v) for v in train_flite]
    return out


def split_sentences_for_corpus(
    sentences: Sequence[str], seed: int, valid_fraction: float, test_fraction: float
) -> dict[str, list[str]]:
    """Shuffle ``sentences`` with the seed and cut them into disjoint train/valid/test lists
    (valid and test get their fraction, at least one sentence each when the fraction is > 0)."""
    n = len(sentences)
    order = list(sentences)
    random.Random(f"tokenlm-corpus:{seed}:sentences").shuffle(order)
    n_valid = max(1, round(n * valid_fraction)) if valid_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_valid - n_test < 1:
        raise TokenLMError(f"{n} sentence(s) are too few to give train, valid and test sentences of their own")
    return {
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
        "train": order[n_valid + n_test :],
    }


def plan_utterances(
    split: str, sentences: Sequence[str], voices: Sequence[tuple[str, str]], seed: int, flite_share: float
) -> Iterator[dict]:
    """The endless, deterministic stream of utterance plans of one split.

    Sentences come in a shuffled order, reshuffled each time the list is used up; each plan
    picks flite with probability ``flite_share`` (when the split has flite voices), a voice,
    a rate, a pitch, a level and the silences."""
    if not sentences:
        raise TokenLMError(f"no sentences for the {split} split")
    if not voices:
        raise TokenLMError(f"no voices for the {split} split")
    rng = random.Random(f"tokenlm-corpus:{seed}:{split}")
    by_engine = {e: [v for en, v in voices if en == e] for e in tts.ENGINES}
    n = len(sentences)
    perm: list[int] = []
    i = 0
    while True:
        if i % n == 0:
            perm = rng.sample(range(n), n)
        u = rng.random()
        engine = "flite" if by_engine["flite"] and (not by_engine["espeak-ng"] or u < flite_share) else "espeak-ng"
        ranges = PROSODY[engine]
        yield {
            "id": f"{split}-{i:06d}",
            "split": split,
            "text": sentences[perm[i % n]],
            "engine": engine,
            "voice": rng.choice(by_engine[engine]),
            "rate": round(rng.uniform(*ranges["rate"]), 3),
            "pitch": round(rng.uniform(*ranges["pitch"]), 3),
            "level_db": round(rng.uniform(*LEVEL_DB), 2),
            "lead": round(rng.uniform(*SILENCE), 3),
            "trail": round(rng.uniform(*SILENCE), 3),
            "noise_seed": rng.getrandbits(31),
        }
        i += 1


# ---- one utterance ---------------------------------------------------------------------------------


def _set_level(wav: torch.Tensor, level_db: float) -> torch.Tensor:
    x = wav[0]
    hop = SAMPLE_RATE // 100
    n = x.shape[0] // hop
    if n == 0:
        return wav
    frames = x[: n * hop].view(n, hop).square().mean(dim=1)
    loud = frames.max()
    if loud <= 0:
        raise TokenLMError("the engine produced silence")
    speech = frames[frames > loud * 1e-4].mean().sqrt()
    gain = 10 ** (level_db / 20) / speech
    peak = x.abs().max()
    gain = min(float(gain), float(10 ** (PEAK_DB / 20) / peak))
    return wav * gain


def render_utterance(plan: dict) -> dict:
    """Synthesize one planned utterance. Returns ``{"id", "ok": True, "samples": float32 [T],
    "words"}`` (plus ``"phones"`` when the plan asks for them with ``"phones": True``) or
    ``{"id", "ok": False, "error"}``; never raises for a bad sentence."""
    try:
        engine = tts.get_engine(plan["engine"])
        tts.seed_noise(plan["noise_seed"])
        want_phones = bool(plan.get("phones"))
        out = engine.synthesize(plan["text"], plan["voice"], rate=plan["rate"], pitch=plan["pitch"],
                                **({"phones": True} if want_phones else {}))
        wav, words = out[0], out[1]
        phones = out[2] if want_phones else None
        if wav.numel() == 0 or not words:
            raise TokenLMError("no audio or no words")
        expected = len(text_mod.words_of(plan["text"]))
        if len(words) != expected:
            raise TokenLMError(f"{len(words)} word times for {expected} words")
        if not torch.isfinite(wav).all():
            raise TokenLMError("the engine produced NaN or infinite samples")
        first_start = words[0]["start"]
        wav, words = tts.trim_silence(wav, words)
        wav = _set_level(wav, plan["level_db"])
        if phones is not None:  # the same shifts as the words (trimming moved them by a whole number of samples)
            phones = tts._shift(phones, words[0]["start"] - first_start, wav.shape[-1] / SAMPLE_RATE)
            wav, both = tts.pad_silence(wav, words + phones, plan["lead"], plan["trail"])
            words, phones = both[: len(words)], [p for p in both[len(words):] if p["end"] > p["start"]]
        else:
            wav, words = tts.pad_silence(wav, words, plan["lead"], plan["trail"])
        duration = wav.shape[-1] / SAMPLE_RATE
        out_words = []
        prev_end = 0.0
        for w in words:
            start, end = round(w["start"], 4), round(w["end"], 4)
            if not prev_end - 1e-3 <= start <= end <= duration:
                raise TokenLMError(f"word times out of order: {w}")
            out_words.append({"word": w["word"], "start": start, "end": end})
            prev_end = end
        res = {"id": plan["id"], "ok": True, "samples": wav[0].numpy().astype(np.float32), "words": out_words}
        if phones is not None:
            res["phones"] = [{"phone": p["phone"], "start": round(p["start"], 4), "end": round(p["end"], 4)}
                             for p in phones]
        return res
    except Exception as e:  # a sentence that fails is skipped, whatever the reason
        return {"id": plan["id"], "ok": False, "error": f"{type(e).__name__}: {e}"}


def _init_worker() -> None:
    torch.set_num_threads(1)


class _Workers:
    """``n`` single-process pools; the k-th task goes to process ``k % n``.

    Each process so speaks a fixed sequence of sentences, whatever the timing: espeak-ng's
    audio depends a little on what its process spoke before (see the module docstring), and
    this makes a build's audio the same from one run of the same command to the next."""

    def __init__(self, n: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # not fork: torch and the engines keep threads and state
        self._pools = [ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker) for _ in range(n)]
        self._count = 0
        self.size = n

    def submit(self, fn: Callable, arg) -> Future:
        pool = self._pools[self._count % len(self._pools)]
        self._count += 1
        return pool.submit(fn, arg)

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True)


def _ordered(
    plans: Iterator[dict],
    done: dict[str, dict],
    workers: _Workers | None,
    render: Callable[[dict], dict],
) -> Iterator[tuple[dict, dict]]:
    """(plan, result) in plan order; plans already done are not made again (result ``{"done": entry}``).

    At most ``4 * workers`` plans are in flight. When the caller stops early, the plans still in
    flight are finished (not cancelled, which would depend on timing) and their results dropped."""
    def reuse(p: dict) -> dict | None:
        e = done.get(p["id"])
        if e is not None and (e["text"], e["voice"], e["engine"]) == (p["text"], p["voice"], p["engine"]):
            return {"id": p["id"], "ok": True, "done": e}
        return None

    if workers is None:
        for p in plans:
            yield p, (reuse(p) or render(p))
        return
    window = 4 * workers.size
    pending: deque = deque()
    try:
        for p in plans:
            kept = reuse(p)
            if kept is not None:
                pending.append((p, None, kept))
            else:
                pending.append((p, workers.submit(render, p), None))
            while len(pending) >= window or (pending and pending[0][1] is None):
                q, fut, res = pending.popleft()
                yield q, (res if fut is None else fut.result())
        while pending:
            q, fut, res = pending.popleft()
            yield q, (res if fut is None else fut.result())
    finally:
        for _, fut, _ in pending:
            if fut is not None:
                fut.exception()  # wait; a failure here belongs to a plan nobody asked for


# ---- the build ---------------------------------------------------------------------------------------


def _targets(hours, num_utterances, valid_fraction, test_fraction) -> dict[str, tuple[str, float]]:
    if (hours is None) == (num_utterances is None):
        raise TokenLMError("give either hours or num_utterances (one of them)")
    for name, f in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise TokenLMError(f"{name} must be in [0, 1), got {f}")
    if valid_fraction + test_fraction >= 1:
        raise TokenLMError("valid_fraction + test_fraction must leave something for train")
    if hours is not None:
        if not hours > 0 or not math.isfinite(hours):
            raise TokenLMError(f"hours must be positive, got {hours}")
        total = hours * 3600.0
        return {
            "train": ("seconds", total * (1 - valid_fraction - test_fraction)),
            "valid": ("seconds", total * valid_fraction),
            "test": ("seconds", total * test_fraction),
        }
    if num_utterances < 1:
        raise TokenLMError(f"num_utterances must be at least 1, got {num_utterances}")
    n_valid = max(1, round(num_utterances * valid_fraction)) if valid_fraction > 0 else 0
    n_test = max(1, round(num_utterances * test_fraction)) if test_fraction > 0 else 0
    if num_utterances - n_valid - n_test < 1:
        raise TokenLMError(f"num_utterances={num_utterances} is too few for train, valid and test")
    return {
        "train": ("count", num_utterances - n_valid - n_test),
        "valid": ("count", n_valid),
        "test": ("count", n_test),
    }


def _existing(out: Path, split: str) -> dict[str, dict]:
    """Entries of a previous run of this build whose wav files exist (final or partial manifest)."""
    done: dict[str, dict] = {}
    final = out / f"{split}.jsonl"
    if final.is_file():
        try:
            for e in read_manifest(final):
                done[e["id"]] = e
        except TokenLMError as err:
            log.warning("ignoring %s: %s", final, err)
    partial = out / f"{split}.jsonl.partial"
    if partial.is_file():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                e = validate_entry(json.loads(line))
            except (json.JSONDecodeError, TokenLMError):
                continue  # a line cut short by an interruption
            e["audio"] = os.path.normpath(out.resolve() / e["audio"])  # absolute, whatever the working folder
            done[e["id"]] = e
    return {k: e for k, e in done.items() if Path(e["audio"]).is_file()}


def _tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        from importlib.metadata import version

        versions["tokenlm"] = version("tokenlm")
    except Exception:
        versions["tokenlm"] = "unknown"
    for name in tts.ENGINES:
        try:
            versions[name] = tts.get_engine(name).version
        except TokenLMError:
            versions[name] = "not installed"
    for pkg in ("wordnet-base", "fortunes"):
        versions[pkg] = tts._debian_version(pkg) or "not installed"
    return versions


def build_corpus(
    out_dir: str | os.PathLike,
    hours: float | None = None,
    num_utterances: int | None = None,
    seed: int = 0,
    workers: int = 2,
    min_words: int = 5,
    max_words: int = 25,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    sentences: Iterable[str] | None = None,
    sources: Sequence[str] = text_mod.SOURCES,
    text_files: Sequence[str | os.PathLike] = (),
    flite_share: float = 0.3,
    test_flite_share: float = 0.5,
    test_variants: Sequence[str] = TEST_VARIANTS,
    valid_variants: Sequence[str] = VALID_VARIANTS,
    include_novelty_voices: bool = False,
    phones: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Build (or resume, or extend) a corpus in ``out_dir``; returns what ``corpus.json`` holds.

    Size: ``hours`` of audio in all (valid and test get ``valid_fraction`` and
    ``test_fraction`` of it), or ``num_utterances`` utterances. Sentences: ``sentences`` if
    given, else :func:`~tokenlm.data.text.load_sentences` over ``sources`` and ``text_files``;
    either way normalized and kept at ``min_words..max_words`` words. ``flite_share``: the
    chance that a train utterance uses flite (``test_flite_share`` for test; valid has no flite
    voice). ``workers``: processes that synthesize (0: this process). ``phones``: each entry also
    gets ``"phones"``, the engine's phone timings (flite: CMU phones and "pau"; espeak-ng: its
    phoneme mnemonics, pauses starting with "_"), moved with the audio like the words.
    ``overwrite``: start again in a folder that holds a corpus built with other settings (else
    that is an error).
    """
    t_start = time.time()
    out = Path(out_dir)
    targets = _targets(hours, num_utterances, valid_fraction, test_fraction)
    for name, share in (("flite_share", flite_share), ("test_flite_share", test_flite_share)):
        if not 0 <= share <= 1:
            raise TokenLMError(f"{name} must be in [0, 1], got {share}")

    # the engines must load here, before any work is handed out
    espeak = tts.get_engine("espeak-ng")
    tts.get_engine("flite")
    splits_voices = voice_splits(espeak.voices(include_novelty_voices), test_variants, valid_variants)

    if sentences is None:
        pool = text_mod.load_sentences(sources, min_words, max_words, text_files)
        source_note = {"sources": list(sources), "text_files": [str(p) for p in text_files]}
    else:
        pool, seen = [], set()
        for s in sentences:
            s = text_mod.normalize_text(s)
            if s and min_words <= len(text_mod.words_of(s)) <= max_words and s.lower() not in seen:
                seen.add(s.lower())
                pool.append(s)
        source_note = {"sources": ["given"]}
    by_split = split_sentences_for_corpus(pool, seed, valid_fraction, test_fraction)
    shares = {"train": flite_share, "valid": flite_share, "test": test_flite_share}

    settings = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "min_words": min_words,
        "max_words": max_words,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "flite_share": flite_share,
        "test_flite_share": test_flite_share,
        "test_variants": list(test_variants),
        "valid_variants": list(valid_variants),
        "include_novelty_voices": include_novelty_voices,
        **({"phones": True} if phones else {}),  # absent when off: older corpora resume as they were
        "prosody": PROSODY,
        "silence_s": list(SILENCE),
        "level_dbfs": list(LEVEL_DB),
        "sentences": {**source_note, "count": len(pool), "sha256_16": text_mod.sentences_digest(pool)},
    }
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they are read back
    _prepare_folder(out, settings, overwrite)

    pool = _Workers(workers) if workers > 0 else None
    from tqdm.auto import tqdm

    summary_splits: dict[str, dict] = {}
    failed: list[dict] = []
    try:
        for split in SPLITS:
            kind, target = targets[split]
            entries: list[dict] = []
            if target <= 0:
                summary_splits[split] = _split_summary([], splits_voices[split], by_split[split], 0)
                write_manifest(out / f"{split}.jsonl", [])
                continue
            done = _existing(out, split)
            (out / "audio" / split).mkdir(parents=True, exist_ok=True)
            partial_path = out / f"{split}.jsonl.partial"
            plans = plan_utterances(split, by_split[split], splits_voices[split], seed, shares[split])
            if phones:
                plans = ({**plan, "phones": True} for plan in plans)
            total = math.ceil(target)
            bar = tqdm(
                total=total,
                desc=f"{split:5s}",
                unit="s" if kind == "seconds" else "utt",
                disable=not progress,
            )
            n_failed = 0
            have = 0.0
            with open(partial_path, "a", encoding="utf-8") as partial:
                for plan, res in _ordered(plans, done, pool, render_utterance):
                    if not res["ok"]:
                        n_failed += 1
                        log.info("skipped %s (%s %s): %s | %r", plan["id"], plan["engine"], plan["voice"], res["error"], plan["text"])
                        if len(failed) < MAX_FAILED_LISTED:
                            failed.append({k: plan[k] for k in ("id", "engine", "voice", "text")} | {"error": res["error"]})
                        if n_failed >= 20 and n_failed > 2 * (len(entries) + 1):
                            raise TokenLMError(
                                f"most {split} sentences fail to synthesize ({n_failed} failed, {len(entries)} made); "
                                f"last error: {res['error']}"
                            )
                        continue
                    if "done" in res:
                        entry = res["done"]
                    else:
                        entry = _write_utterance(out, plan, res)
                        partial.write(json.dumps({**entry, "audio": os.path.relpath(entry["audio"], out.resolve())}) + "\n")
                        partial.flush()
                    entries.append(entry)
                    have += entry["duration"] if kind == "seconds" else 1
                    bar.update(min(int(have), total) - bar.n)
                    bar.set_postfix(utts=len(entries), failed=n_failed, refresh=False)
                    if have >= target:
                        break
            bar.close()
            if n_failed:
                log.warning("%s: skipped %d sentence(s) that failed to synthesize (listed in corpus.json)", split, n_failed)
            write_manifest(out / f"{split}.jsonl", entries)
            partial_path.unlink(missing_ok=True)
            _remove_strays(out / "audio" / split, {Path(e["audio"]).name for e in entries})
            summary_splits[split] = _split_summary(entries, splits_voices[split], by_split[split], n_failed)
    finally:
        if pool is not None:
            pool.close()

    total_s = sum(s["seconds"] for s in summary_splits.values())
    elapsed = time.time() - t_start
    summary = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "requested": {"hours": hours, "num_utterances": num_utterances},
        "sample_rate": SAMPLE_RATE,
        "total_utterances": sum(s["utterances"] for s in summary_splits.values()),
        "total_hours": round(total_s / 3600, 4),
        "failures": sum(s["failures"] for s in summary_splits.values()),
        "splits": summary_splits,
        "failed": failed,
        "settings": settings,
        "tools": _tool_versions(),
        "build_seconds": round(elapsed, 1),
        "workers": workers,
    }
    text = json.dumps(summary, indent=1, ensure_ascii=False) + "\n"
    atomic_write(out / "corpus.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    (out / ".build.json").unlink(missing_ok=True)
    return summary


def _write_utterance(out: Path, plan: dict, res: dict) -> dict:
    path = out / "audio" / plan["split"] / f"{plan['id']}.wav"
    samples = res["samples"]
    save_audio(path, torch.from_numpy(samples)[None], SAMPLE_RATE)
    return {
        "id": plan["id"],
        "audio": str(path.resolve()),
        "text": plan["text"],
        "words": res["words"],
        "voice": plan["voice"],
        "engine": plan["engine"],
        "duration": round(samples.shape[0] / SAMPLE_RATE, 6),
        "sample_rate": SAMPLE_RATE,
        "split": plan["split"],
        **({"phones": res["phones"]} if "phones" in res else {}),
    }


def _split_summary(entries: list[dict], allowed: list[tuple[str, str]], sentences: list[str], failures: int) -> dict:
    seconds = sum(e["duration"] for e in entries)
    return {
        "utterances": len(entries),
        "seconds": round(seconds, 3),
        "hours": round(seconds / 3600, 4),
        "failures": failures,
        "engines": dict(sorted(Counter(e["engine"] for e in entries).items())),
        "voices_used": dict(sorted(Counter(e["voice"] for e in entries).items())),
        "sentences_used": len({e["text"] for e in entries}),
        "sentences_reserved": len(sentences),
        "voices_allowed": [f"{e}:{v}" for e, v in allowed],
    }


def _prepare_folder(out: Path, settings: dict, overwrite: bool) -> None:
    """Check that ``out`` is empty, or holds a build with the same settings (resume/extend)."""
    marker = out / ".build.json"
    previous = None
    if (out / "corpus.json").is_file():
        try:
            previous = json.loads((out / "corpus.json").read_text(encoding="utf-8")).get("settings")
        except (json.JSONDecodeError, OSError):
            previous = None
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            previous = None
    has_content = out.is_dir() and any(out.iterdir())
    if has_content and previous != settings:
        if not overwrite:
            why = "other settings" if previous is not None else "something that is not a tokenlm corpus"
            raise TokenLMError(
                f"{out}: holds {why}; choose another output folder or pass overwrite=True (--overwrite)"
            )
        if previous is None and not (out / "audio").is_dir():
            raise TokenLMError(f"{out}: not a corpus folder; refusing to clear it")
        shutil.rmtree(out / "audio", ignore_errors=True)
        for p in out.glob("*.jsonl*"):
            p.unlink()
        (out / "corpus.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings, indent=1) + "\n"
    atomic_write(marker, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _remove_strays(folder: Path, keep: set[str]) -> None:
    for p in folder.glob("*.wav"):
        if p.name not in keep:
            p.unlink()
