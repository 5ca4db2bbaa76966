"""Speech to text and back with the bundled token LMs.

    python examples/asr_tts.py [IN.wav] [--text "..."] [--out-dir out/demo] [--asr asr] [--tts tts]

1. Streams IN.wav (default: the bundled sample) through the ASR model 80 ms at a time, printing
   each word with its time as soon as it is recognized (greedy), then transcribes the whole file
   offline (beam search with the model's word language model).
2. Speaks ``--text`` with the TTS model, writes it to OUT_DIR/spoken.wav and transcribes it back.

Uses only the public API (tokenlm.lm.tasks, tokenlm.audio).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tokenlm.audio import load_audio, save_audio
from tokenlm.errors import CheckpointError
from tokenlm.lm.tasks import Speaker, Transcriber

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", type=Path, default=HERE / "data" / "sample.wav")
    p.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    p.add_argument("--out-dir", type=Path, default=Path("out/demo"))
    p.add_argument("--asr", default="asr")
    p.add_argument("--tts", default="tts")
    args = p.parse_args()

    try:
        tr = Transcriber(args.asr)
    except CheckpointError as e:
        print(f"ASR: skipped ({e})")
        return 0
    wav, sr = load_audio(args.input, tr.codec.sample_rate, tr.codec.channels)
    print(f"ASR ({args.asr}): streaming {args.input.name} ({wav.shape[-1] / sr:.2f} s) in 80 ms chunks")
    session, words, t0 = tr.session(), [], time.perf_counter()
    step = int(0.08 * sr)
    for i in range(0, wav.shape[-1], step):
        for w in session.push(wav[:, i: i + step]):
            print(f"  {w.start:6.2f}-{w.end:5.2f} s  {w.word}")
            words.append(w)
    for w in session.finish():
        print(f"  {w.start:6.2f}-{w.end:5.2f} s  {w.word}")
        words.append(w)
    took = time.perf_counter() - t0
    print(f"  transcript: {' '.join(w.word for w in words)}")
    print(f"  {took:.2f} s for {wav.shape[-1] / sr:.2f} s of audio: {wav.shape[-1] / sr / took:.1f}x real time")
    if tr.beam is not None:  # offline, the whole file at once: beam search with the word language model
        t0 = time.perf_counter()
        offline = " ".join(w.word for w in tr.transcribe(wav))
        print(f"  offline, beam search + word language model: {offline}  ({time.perf_counter() - t0:.2f} s)")

    try:
        sp = Speaker(args.tts)
    except CheckpointError as e:
        print(f"TTS: skipped ({e})")
        return 0
    t0 = time.perf_counter()
    spoken = sp.speak(args.text)
    took = time.perf_counter() - t0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = save_audio(args.out_dir / "spoken.wav", spoken, sp.codec.sample_rate)
    secs = spoken.shape[-1] / sp.codec.sample_rate
    print(f"TTS ({args.tts}, voices: {sp.voices}): {args.text!r} -> {path} ({secs:.2f} s, made in {took:.2f} s)")
    back = " ".join(w.word for w in tr.transcribe(spoken, sp.codec.sample_rate))
    print(f"  heard back by the ASR: {back!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
