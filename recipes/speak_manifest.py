"""A manifest's sentences spoken again in voices you choose: the same text, another speaker.

    python recipes/speak_manifest.py --manifest data/corpus60/test.jsonl --voices kal16,awb --limit 60 \\
        --out eval/seen
    python recipes/speak_manifest.py --manifest data/corpus60/test.jsonl --voices kal16 --limit 30 --out eval/kal16
    python recipes/speak_manifest.py --manifest pool.jsonl --engine festival --voices ked --rate 0.85 1.2 \
        --pitch 0.85 1.2 --out data/ked --name train.jsonl --skip-errors

Separates what a model knows of a voice from what it knows of a sentence: the test split's
sentences spoken by a *training* voice measure unseen text in a known voice (eval_asr.py), and a
TTS model's own voice speaking its test sentences is the reference its output is judged against
(eval_codec.py --wer: what the codec's round trip alone costs). Utterance i takes voice
i mod len(voices); --rate and --pitch draw each utterance's speaking rate and pitch factors
from a range (seeded by --seed and the utterance's id: the same command gives the same audio). Writes OUT/audio/*.wav (16 kHz) and OUT/test.jsonl (or --name) with the
engine's word timings, ready for eval_asr.py, eval_codec.py or pretokenize.py. Run it again to
redo; the manifest is written last.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

EPILOG = """exit status: 0 done, 1 a problem with the input (one line on stderr), 2 bad arguments."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="speak_manifest.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="the manifest whose sentences are spoken")
    p.add_argument("--voices", required=True, help="comma-separated voices, used in turn (e.g. kal16,awb)")
    p.add_argument("--engine", default="flite", choices=["flite", "espeak-ng", "festival"],
                   help="the engine (default flite; festival: apt-get install festival festvox-kdlpc16k)")
    p.add_argument("--rate", type=float, nargs=2, metavar=("LO", "HI"), help="speaking-rate factor of each "
                   "utterance, uniform in LO..HI (default: the voice's own)")
    p.add_argument("--pitch", type=float, nargs=2, metavar=("LO", "HI"), help="pitch factor of each utterance, "
                   "uniform in LO..HI (default: the voice's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rate and pitch draws (default 0)")
    p.add_argument("--limit", type=int, help="the first N utterances only")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the audio and the manifest")
    p.add_argument("--name", default="test.jsonl", help="file name of the new manifest (default test.jsonl)")
    p.add_argument("--skip-errors", action="store_true", help="leave out sentences the engine cannot speak "
                   "(counted at the end) instead of stopping at the first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    if not [v for v in args.voices.split(",") if v.strip()]:
        p.error("--voices names no voice")
    for name in ("rate", "pitch"):
        r = getattr(args, name)
        if r is not None and not 0 < r[0] <= r[1]:
            p.error(f"--{name} needs 0 < LO <= HI, got {r[0]} {r[1]}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from tokenlm.audio import save_audio
    from tokenlm.data.manifest import read_manifest, write_manifest
    from tokenlm.data.tts import SAMPLE_RATE, get_engine
    from tokenlm.errors import TokenLMError

    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    out_dir = Path(args.out)
    try:
        entries = read_manifest(args.manifest)
        entries = entries[: args.limit] if args.limit else entries
        if not entries:
            raise TokenLMError(f"{args.manifest}: no utterances")
        engine = get_engine(args.engine)
        for v in voices:
            if args.engine != "espeak-ng" and v not in engine.voices():
                raise TokenLMError(f"{args.engine} has no voice {v!r}; choose from {', '.join(engine.voices())}")
        (out_dir / "audio").mkdir(parents=True, exist_ok=True)
        new, skipped = [], 0
        for i, e in enumerate(tqdm(entries, desc="speak", unit="utt", disable=True if args.no_progress else None)):
            voice = voices[i % len(voices)]
            rng = random.Random(f"speak:{args.seed}:{e['id']}")
            rate = round(rng.uniform(*args.rate), 3) if args.rate else 1.0
            pitch = round(rng.uniform(*args.pitch), 3) if args.pitch else 1.0
            try:
                wav, words = engine.synthesize(e["text"], voice=voice, rate=rate, pitch=pitch)
            except TokenLMError:
                if not args.skip_errors:
                    raise
                skipped += 1
                continue
            uid = f"{e['id']}+{voice}"
            path = out_dir / "audio" / f"{uid}.wav"
            save_audio(path, wav, SAMPLE_RATE)
            new.append({"id": uid, "audio": str(path.resolve()), "text": e["text"], "words": words, "voice": voice,
                        "engine": args.engine, "duration": round(wav.shape[-1] / SAMPLE_RATE, 6),
                        "sample_rate": SAMPLE_RATE, "split": e.get("split", "test"), "source": e["id"],
                        **({"rate": rate} if args.rate else {}), **({"pitch": pitch} if args.pitch else {})})
        if not new:
            raise TokenLMError(f"{args.manifest}: the engine could speak none of its {len(entries)} sentences")
        write_manifest(out_dir / args.name, new)
    except TokenLMError as e:
        print(f"speak_manifest: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    minutes = sum(e["duration"] for e in new) / 60
    print(f"{out_dir / args.name}: {len(new)} utterances, {minutes:.1f} min, voices {', '.join(voices)}"
          + (f"; {skipped} sentences the engine could not speak were left out" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
