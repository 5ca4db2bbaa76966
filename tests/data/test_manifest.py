"""Manifests: round trip, relative paths, and one clear error (file:line) per kind of bad line."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tokenlm.data.manifest import manifest_from_folder, read_manifest, validate_entry, write_manifest
from tokenlm.errors import AudioError, TokenLMError


def entry(tmp_path: Path, i: int = 0, **over) -> dict:
    e = {
        "id": f"train-{i:06d}",
        "audio": str(tmp_path / "audio" / "train" / f"train-{i:06d}.wav"),
        "text": "Alpha beta gamma.",
        "words": [
            {"word": "Alpha", "start": 0.1, "end": 0.4},
            {"word": "beta", "start": 0.4, "end": 0.7},
            {"word": "gamma", "start": 0.8, "end": 1.2},
        ],
        "voice": "en-us+m3",
        "engine": "espeak-ng",
        "duration": 1.5,
        "sample_rate": 16000,
        "split": "train",
    }
    e.update(over)
    return e


def test_round_trip_stores_relative_paths_and_reads_absolute(tmp_path):
    entries = [entry(tmp_path, 0), entry(tmp_path, 1, extra={"snr": 30})]
    outside = tmp_path.parent / "elsewhere.wav"
    entries.append(entry(tmp_path, 2, audio=str(outside), engine="user", words=None))
    path = tmp_path / "train.jsonl"
    write_manifest(path, entries)

    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["audio"] == "audio/train/train-000000.wav"  # inside the folder: relative
    assert lines[2]["audio"] == str(outside)  # outside: absolute
    assert list(lines[0])[:9] == ["id", "audio", "text", "words", "voice", "engine", "duration", "sample_rate", "split"]

    back = read_manifest(path)
    assert [e["audio"] for e in back] == [entries[0]["audio"], entries[1]["audio"], str(outside)]
    assert back[0]["words"] == entries[0]["words"]
    assert back[1]["extra"] == {"snr": 30}  # unknown keys are kept
    assert back[2]["words"] == []  # absent/None words read as []
    # a relative manifest path and a relative audio path resolve against the manifest's folder
    (tmp_path / "sub").mkdir()
    rel = tmp_path / "sub" / "m.jsonl"
    rel.write_text(json.dumps({**lines[0], "audio": "../audio/train/train-000000.wav"}) + "\n\n")
    assert read_manifest(rel)[0]["audio"] == entries[0]["audio"]


def test_write_is_atomic_and_checks_entries(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, [entry(tmp_path)])
    before = path.read_text()
    with pytest.raises(TokenLMError, match="entry 1.*engine"):
        write_manifest(path, [entry(tmp_path), entry(tmp_path, 1, engine="mbrola")])
    with pytest.raises(TokenLMError, match="used twice"):
        write_manifest(path, [entry(tmp_path), entry(tmp_path)])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temporary file left


BAD = [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (lambda e: e.pop("text"), "missing key.*text"),
    (lambda e: e.update(id=""), "'id' must be a non-empty string"),
    (lambda e: e.update(engine="mbrola"), "'engine' must be one of"),
    (lambda e: e.update(split="dev"), "'split' must be one of"),
    (lambda e: e.update(duration=-1), "'duration' must be a positive"),
    (lambda e: e.update(duration=float("nan")), "'duration' must be a positive"),
    (lambda e: e.update(sample_rate=16000.0), "'sample_rate' must be a positive integer"),
    (lambda e: e.update(sample_rate=True), "'sample_rate' must be a positive integer"),
    (lambda e: e.update(words="Alpha beta"), "'words' must be a list"),
    (lambda e: e["words"].append({"word": "x"}), r"words\[3\].*numeric"),
    (lambda e: e["words"].append({"start": 1, "end": 1.1}), r"words\[3\].*non-empty 'word'"),
    (lambda e: e["words"][1].update(start=0.05), r"words\[1\].*before the word ahead"),
    (lambda e: e["words"][2].update(end=1.7), r"words\[2\].*outside 0..1.5"),
    (lambda e: e["words"][2].update(start=1.3), r"words\[2\].*backwards"),
]


@pytest.mark.parametrize("bad,message", BAD)
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    good = entry(tmp_path)
    if callable(bad):
        e = json.loads(json.dumps(good))
        bad(e)
        line = json.dumps(e)
    else:
        line = bad
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(TokenLMError, match=f"m.jsonl:2: .*{message}"):
        read_manifest(path)


def test_duplicate_ids_and_missing_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(entry(tmp_path)) + "\n" + json.dumps(entry(tmp_path)) + "\n")
    with pytest.raises(TokenLMError, match="m.jsonl:2: id 'train-000000' already used on line 1"):
        read_manifest(path)
    with pytest.raises(TokenLMError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    assert validate_entry({**entry(tmp_path), "words": []})["words"] == []


def _tone(path: Path, seconds: float, sr: int, fmt: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format=fmt)


def test_manifest_from_folder(tmp_path):
    folder = tmp_path / "rec"
    _tone(folder / "alice" / "a1.wav", 1.0, 16000)
    (folder / "alice" / "a1.txt").write_text("Hello   there,\nworld.\n")
    _tone(folder / "alice" / "a2.flac", 0.5, 22050)
    _tone(folder / "bob" / "b1.ogg", 0.75, 16000, fmt="OGG")
    (folder / "bob" / "notes.txt").write_text("not audio")
    transcripts = tmp_path / "transcripts.txt"
    transcripts.write_text("alice/a2 Second one.\nb1\tBob speaks.\n")
    out = tmp_path / "corpus" / "train.jsonl"

    entries = manifest_from_folder(folder, out, split="valid", transcripts=transcripts)
    assert [e["id"] for e in entries] == ["alice/a1", "alice/a2", "bob/b1"]
    assert [e["text"] for e in entries] == ["Hello there, world.", "Second one.", "Bob speaks."]
    assert [e["voice"] for e in entries] == ["alice", "alice", "bob"]
    assert {e["engine"] for e in entries} == {"user"} and {e["split"] for e in entries} == {"valid"}
    assert [e["sample_rate"] for e in entries] == [16000, 22050, 16000]
    assert entries[0]["duration"] == pytest.approx(1.0) and entries[1]["duration"] == pytest.approx(0.5)
    back = read_manifest(out)
    assert [e["audio"] for e in back] == [str((folder / p).resolve()) for p in ("alice/a1.wav", "alice/a2.flac", "bob/b1.ogg")]
    assert all(e["words"] == [] for e in back)

    # a mapping works too; no transcript at all gives ""
    entries = manifest_from_folder(folder, out, transcripts={"a1": "Mapped."})
    assert [e["text"] for e in entries] == ["Mapped.", "", ""]


def test_manifest_from_folder_errors(tmp_path):
    with pytest.raises(TokenLMError, match="no such folder"):
        manifest_from_folder(tmp_path / "nope", tmp_path / "m.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenLMError, match="no audio files"):
        manifest_from_folder(tmp_path / "empty", tmp_path / "m.jsonl")
    _tone(tmp_path / "dup" / "x.wav", 0.2, 16000)
    _tone(tmp_path / "dup" / "x.flac", 0.2, 16000)
    with pytest.raises(TokenLMError, match="same name"):
        manifest_from_folder(tmp_path / "dup", tmp_path / "m.jsonl")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError, match="broken.wav"):
        manifest_from_folder(tmp_path / "bad", tmp_path / "m.jsonl")
    with pytest.raises(TokenLMError, match="split must be"):
        manifest_from_folder(tmp_path / "dup", tmp_path / "m.jsonl", split="dev")
    assert not (tmp_path / "m.jsonl").exists()
