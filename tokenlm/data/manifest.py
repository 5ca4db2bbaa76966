"""Speech manifests: one JSON object per line, one line per utterance.

Each line holds::

    {"id": "train-000042",                # unique within the file
     "audio": "audio/train/train-000042.wav",  # relative to the manifest's folder, or absolute
     "text": "The dog barked twice.",
     "words": [{"word": "The", "start": 0.21, "end": 0.33}, ...],  # seconds; may be [] or absent
     "voice": "en-us+m3", "engine": "espeak-ng",   # engine: espeak-ng | flite | festival | user
     "duration": 2.48, "sample_rate": 16000, "split": "train"}   # split: train | valid | test

Word times are in seconds from the start of the file, in order (starts never go back), each
``0 <= start <= end <= duration``. Keys beyond these are kept as they are.

:func:`read_manifest` checks every line and returns dicts whose ``audio`` is an absolute path;
a bad line raises :class:`~tokenlm.errors.TokenLMError` naming ``file:line``.
:func:`write_manifest` writes atomically, storing audio paths inside the manifest's folder as
relative paths. :func:`manifest_from_folder` describes a folder of the user's own recordings.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..audio import audio_info
from ..errors import AudioError, TokenLMError
from ..fileio import atomic_write

__all__ = [
    "ENGINES",
    "SPLITS",
    "AUDIO_EXTENSIONS",
    "read_manifest",
    "write_manifest",
    "validate_entry",
    "manifest_from_folder",
]

ENGINES = ("espeak-ng", "flite", "festival", "user")
SPLITS = ("train", "valid", "test")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
KEYS = ("id", "audio", "text", "words", "voice", "engine", "duration", "sample_rate", "split")
TIME_SLACK = 0.01  # seconds a word may end past the duration (rounding)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_entry(entry: object, where: str = "entry") -> dict:
    """Check one manifest entry; returns a copy with ``words`` filled in (``[]`` when absent).

    Raises :class:`TokenLMError` starting with ``where`` and saying what is wrong."""
    if not isinstance(entry, Mapping):
        raise TokenLMError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    e = dict(entry)
    missing = [k for k in KEYS if k != "words" and k not in e]
    if missing:
        raise TokenLMError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in ("id", "audio", "voice"):
        if not isinstance(e[key], str) or not e[key]:
            raise TokenLMError(f"{where}: {key!r} must be a non-empty string, got {e[key]!r}")
    if not isinstance(e["text"], str):
        raise TokenLMError(f"{where}: 'text' must be a string, got {e['text']!r}")
    if e["engine"] not in ENGINES:
        raise TokenLMError(f"{where}: 'engine' must be one of {', '.join(ENGINES)}, got {e['engine']!r}")
    if e["split"] not in SPLITS:
        raise TokenLMError(f"{where}: 'split' must be one of {', '.join(SPLITS)}, got {e['split']!r}")
    if not _number(e["duration"]) or e["duration"] <= 0:
        raise TokenLMError(f"{where}: 'duration' must be a positive number of seconds, got {e['duration']!r}")
    sr = e["sample_rate"]
    if not isinstance(sr, int) or isinstance(sr, bool) or sr <= 0:
        raise TokenLMError(f"{where}: 'sample_rate' must be a positive integer, got {sr!r}")
    words = e.get("words")
    if words is None:
        words = []
    if not isinstance(words, list):
        raise TokenLMError(f"{where}: 'words' must be a list, got {type(words).__name__}")
    prev_start = 0.0
    for i, w in enumerate(words):
        if not isinstance(w, Mapping) or not isinstance(w.get("word"), str) or not w.get("word"):
            raise TokenLMError(f"{where}: words[{i}] must be an object with a non-empty 'word' string, got {w!r}")
        s, t = w.get("start"), w.get("end")
        if not _number(s) or not _number(t):
            raise TokenLMError(f"{where}: words[{i}] ({w['word']!r}) needs numeric 'start' and 'end' seconds")
        if not 0 <= s <= t <= e["duration"] + TIME_SLACK:
            raise TokenLMError(
                f"{where}: words[{i}] ({w['word']!r}) runs {s}..{t} s, outside 0..{e['duration']} s or backwards"
            )
        if s < prev_start:
            raise TokenLMError(f"{where}: words[{i}] ({w['word']!r}) starts at {s} s, before the word ahead of it")
        prev_start = s
    e["words"] = [dict(w) for w in words]
    return e


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read and check a JSONL manifest; each entry's ``audio`` becomes an absolute path string.

    Blank lines are skipped. Duplicate ids, bad JSON, missing keys or bad values raise
    :class:`TokenLMError` naming ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise TokenLMError(f"{path}: no such manifest" + (" (it is a directory)" if path.is_dir() else ""))
    base = path.resolve().parent
    out: list[dict] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise TokenLMError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            e = validate_entry(obj, where)
            if e["id"] in seen:
                raise TokenLMError(f"{where}: id {e['id']!r} already used on line {seen[e['id']]}")
            seen[e["id"]] = lineno
            e["audio"] = os.path.normpath(base / e["audio"])  # an absolute path stays as it is
            out.append(e)
    return out


def _relative_audio(audio: str, base: Path) -> str:
    p = Path(audio)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.normpath(p)).relative_to(base).as_posix()
    except ValueError:
        return str(p)


def write_manifest(path: str | os.PathLike, entries: Iterable[Mapping]) -> Path:
    """Check ``entries`` and write them as a JSONL manifest, atomically.

    Absolute audio paths inside the manifest's folder are stored relative to it; other absolute
    paths stay absolute, relative ones are taken as already relative to the manifest's folder."""
    path = Path(path)
    base = Path(os.path.normpath(path.resolve().parent))
    lines = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        e = validate_entry(entry, f"{path}: entry {i}")
        if e["id"] in seen:
            raise TokenLMError(f"{path}: entry {i}: id {e['id']!r} used twice")
        seen.add(e["id"])
        e["audio"] = _relative_audio(e["audio"], base)
        ordered = {k: e[k] for k in KEYS}
        ordered.update({k: v for k, v in e.items() if k not in ordered})
        lines.append(json.dumps(ordered, ensure_ascii=False))

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    return atomic_write(path, write)


def _read_transcripts(transcripts) -> dict[str, str]:
    if transcripts is None:
        return {}
    if isinstance(transcripts, Mapping):
        return {str(k): str(v) for k, v in transcripts.items()}
    path = Path(transcripts)
    if not path.is_file():
        raise TokenLMError(f"{path}: no such transcript file")
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, sep, text = line.replace("\t", " ", 1).partition(" ")
            if not sep:
                raise TokenLMError(f"{path}:{lineno}: expected '<name> <transcript>', got {line!r}")
            table[key] = text.strip()
    return table


def manifest_from_folder(
    folder: str | os.PathLike,
    out_path: str | os.PathLike,
    split: str = "train",
    transcripts: str | os.PathLike | Mapping[str, str] | None = None,
) -> list[dict]:
    """Describe every audio file (wav/flac/ogg) under ``folder`` in a manifest at ``out_path``.

    Entry id: the file's path under ``folder`` without extension (``spk1/utt3``). Text: from
    ``transcripts`` (a mapping, or a file of ``<name> <transcript>`` lines, where name is the id
    or the bare file stem), else from a ``.txt`` file beside the audio with the same stem, else
    empty. Engine ``user``; voice: the name of the folder holding the file; no word times.
    Duration and sample rate come from the file's header. Returns the entries written (with
    absolute audio paths)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TokenLMError(f"{folder}: no such folder")
    if split not in SPLITS:
        raise TokenLMError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    table = _read_transcripts(transcripts)
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise TokenLMError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    entries: list[dict] = []
    owner: dict[str, Path] = {}
    for p in files:
        rel = p.relative_to(folder)
        uid = rel.with_suffix("").as_posix()
        if uid in owner:
            raise TokenLMError(f"{p}: same name as {owner[uid]}; ids must be unique (rename one of them)")
        owner[uid] = p
        info = audio_info(p)
        if info["num_samples"] <= 0:
            raise AudioError(f"{p}: contains no samples (zero-length audio)")
        if uid in table:
            text = table[uid]
        elif p.stem in table:
            text = table[p.stem]
        elif p.with_suffix(".txt").is_file():
            text = " ".join(p.with_suffix(".txt").read_text(encoding="utf-8", errors="replace").split())
        else:
            text = ""
        entries.append(
            {
                "id": uid,
                "audio": str(p.resolve()),
                "text": text,
                "words": [],
                "voice": p.parent.resolve().name or "user",
                "engine": "user",
                "duration": round(info["duration_s"], 6),
                "sample_rate": int(info["sample_rate"]),
                "split": split,
            }
        )
    write_manifest(out_path, entries)
    return entries
