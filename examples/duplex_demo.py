"""Full duplex with the bundled model: a user asks questions, the model answers while listening.

    python examples/duplex_demo.py [IN.wav] [--out-dir out/demo] [--model duplex]

Runs the full-duplex model over IN.wav (default: the bundled questions sample, spoken by voices the
model never heard in training) 40 ms at a time, as if the user were speaking live, prints what the
model says and when, and writes OUT_DIR/duplex.wav (left: the user, right: the model). Then says how
to talk to it live in the browser (``tokenlm serve``).

Uses only the public API (tokenlm.lm.realtime, tokenlm.audio).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from tokenlm.audio import load_audio, save_audio
from tokenlm.errors import CheckpointError
from tokenlm.lm.realtime import load_engine, run_duplex

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", type=Path, default=HERE / "data" / "questions.wav")
    p.add_argument("--out-dir", type=Path, default=Path("out/demo"))
    p.add_argument("--model", default="duplex")
    args = p.parse_args()

    try:
        eng = load_engine("duplex", args.model, max_sessions=1)
    except CheckpointError as e:
        print(f"duplex: skipped ({e})")
        return 0
    sr = eng.sample_rate
    wav, _ = load_audio(args.input, sr, 1)
    print(f"duplex ({args.model}): the user's side is {args.input.name} ({wav.shape[-1] / sr:.1f} s), fed 40 ms "
          "at a time")
    t0 = time.perf_counter()
    model, words = run_duplex(eng, wav[0], tail_seconds=1.5)
    took = time.perf_counter() - t0
    for w in words:
        print(f"  {w.start:6.2f} s  model says: {w.word}")
    both = torch.stack([torch.nn.functional.pad(wav[0], (0, model.numel() - wav.shape[-1])), model])
    path = save_audio(args.out_dir / "duplex.wav", both, sr)
    print(f"wrote {path} (left: user, right: model); {model.numel() / sr:.1f} s of dialogue in {took:.1f} s "
          f"({model.numel() / sr / took:.1f}x real time)")
    print("talk to it live: `tokenlm serve` (or `make serve`), then open http://127.0.0.1:8998/ in a browser")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
