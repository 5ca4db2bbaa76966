"""Build an offline multi-voice speech corpus with word timings (espeak-ng + flite), or describe a
folder of your own recordings as a manifest.

    python recipes/build_corpus.py --out data/corpus --hours 2 --seed 0 [--workers 2] [--max-words 25]
    python recipes/build_corpus.py --out data/corpus --num-utterances 500
    python recipes/build_corpus.py --from-folder my_recordings/ --out data/mine [--split train]

Synthetic corpus: OUT/audio/{train,valid,test}/*.wav (16 kHz mono 16-bit), OUT/{train,valid,test}.jsonl
(one utterance per line: id, audio, text, words with start/end seconds, voice, engine, duration,
sample_rate, split) and OUT/corpus.json (settings, counts, hours, voices per split, failures,
tool versions). Test holds out flite slt and rms and some espeak-ng variants; valid holds out
other variants; sentences never repeat across splits. Same seed, same corpus plan. Run it again
with the same settings to resume an interrupted build, or with more hours to extend one.

Your own data (--from-folder): every wav/flac/ogg under DIR becomes one line of OUT/SPLIT.jsonl
(or --manifest PATH); its text comes from --transcripts FILE ("<name> <transcript>" lines) or a
.txt file beside the audio with the same name; engine "user", voice = the folder holding the file.

Needs the Debian packages espeak-ng, flite (libespeak-ng1, libflite1) and the text packages
wordnet-base and fortunes: `make speech-deps` installs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

EPILOG = """examples:
  %(prog)s --out data/corpus --hours 0.5 --seed 0
  %(prog)s --out data/corpus --hours 2 --workers 4 --max-words 20
  %(prog)s --out data/corpus --num-utterances 200 --text-file my_sentences.txt --no-default-text
  %(prog)s --from-folder ~/recordings --out data/mine --transcripts ~/recordings/transcripts.txt

exit status: 0 done, 1 a problem with the input or the machine (one line on stderr), 2 bad
arguments, 130 interrupted (run the same command again to resume)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="build_corpus.py",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the corpus (created if missing)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--hours", type=float, help="hours of audio in all splits together (e.g. 0.5, 2, 50)")
    size.add_argument("--num-utterances", type=int, metavar="N", help="number of utterances instead of hours")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random: sentences, voices, prosody (default 0)")
    p.add_argument(
        "--workers", type=int, default=2, help="processes that synthesize; 0 = in this process (default 2)"
    )
    p.add_argument("--min-words", type=int, default=5, help="shortest sentence, in words (default 5)")
    p.add_argument("--max-words", type=int, default=25, help="longest sentence, in words (default 25)")
    p.add_argument(
        "--valid-fraction", type=float, default=0.05, help="share of hours (and sentences) for valid (default 0.05)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.05, help="share of hours (and sentences) for test (default 0.05)"
    )
    p.add_argument(
        "--flite-share",
        type=float,
        default=0.3,
        help="chance that a train utterance uses flite (kal16, awb) rather than espeak-ng (default 0.3)",
    )
    p.add_argument(
        "--test-flite-share",
        type=float,
        default=0.5,
        help="chance that a test utterance uses flite (slt, rms) (default 0.5)",
    )
    p.add_argument(
        "--text-file",
        action="append",
        default=[],
        metavar="FILE",
        help="extra sentences, one per line (repeatable); normalized like the rest",
    )
    p.add_argument(
        "--no-default-text",
        action="store_true",
        help="use only --text-file sentences, not the Debian text packages (wordnet-base, fortunes)",
    )
    p.add_argument(
        "--all-variants",
        action="store_true",
        help="also use espeak-ng's novelty variants (robots, 'Demonic', the 'fast' test voice)",
    )
    p.add_argument(
        "--phones",
        action="store_true",
        help="also store phone timings (\"phones\": [{phone, start, end}], the engines' own phone names)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="OUT holds a corpus built with other settings: delete its audio and manifests and start again",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log every skipped sentence (else one line per split)")
    own = p.add_argument_group("your own recordings (instead of synthesis)")
    own.add_argument("--from-folder", metavar="DIR", help="write a manifest for every audio file under DIR")
    own.add_argument(
        "--split", default="train", choices=("train", "valid", "test"), help="split of those files (default train)"
    )
    own.add_argument("--transcripts", metavar="FILE", help="'<name> <transcript>' lines (name: path without extension, or stem)")
    own.add_argument("--manifest", metavar="PATH", help="where to write that manifest (default OUT/SPLIT.jsonl)")
    args = p.parse_args(argv)
    if args.from_folder is None and args.hours is None and args.num_utterances is None:
        p.error("give --hours or --num-utterances (or --from-folder DIR)")
    if args.from_folder is not None and (args.hours is not None or args.num_utterances is not None):
        p.error("--from-folder makes a manifest of existing audio; it takes no --hours/--num-utterances")
    if args.workers < 0:
        p.error("--workers must be >= 0")
    if args.no_default_text and not args.text_file:
        p.error("--no-default-text needs at least one --text-file")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from tqdm.contrib.logging import logging_redirect_tqdm

    from tokenlm.errors import TokenLMError

    try:
        with logging_redirect_tqdm():
            if args.from_folder is not None:
                return _from_folder(args)
            return _build(args)
    except TokenLMError as e:
        print(f"build_corpus: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build_corpus: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _from_folder(args) -> int:
    from tokenlm.data.manifest import manifest_from_folder

    out_path = Path(args.manifest) if args.manifest else Path(args.out) / f"{args.split}.jsonl"
    entries = manifest_from_folder(args.from_folder, out_path, split=args.split, transcripts=args.transcripts)
    hours = sum(e["duration"] for e in entries) / 3600
    with_text = sum(1 for e in entries if e["text"])
    print(f"{out_path}: {len(entries)} files, {hours:.3f} h, {with_text} with a transcript")
    return 0


def _build(args) -> int:
    import torch

    from tokenlm.data import text as text_mod
    from tokenlm.data.corpus import build_corpus

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    t0 = time.time()
    summary = build_corpus(
        args.out,
        hours=args.hours,
        num_utterances=args.num_utterances,
        seed=args.seed,
        workers=args.workers,
        min_words=args.min_words,
        max_words=args.max_words,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        sources=() if args.no_default_text else text_mod.SOURCES,
        text_files=args.text_file,
        flite_share=args.flite_share,
        test_flite_share=args.test_flite_share,
        include_novelty_voices=args.all_variants,
        phones=args.phones,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    wall = time.time() - t0
    print(f"{args.out}: {summary['total_utterances']} utterances, {summary['total_hours']:.3f} h in {wall:.0f} s")
    for split, s in summary["splits"].items():
        engines = ", ".join(f"{k} {v}" for k, v in s["engines"].items())
        print(
            f"  {split:5s} {s['utterances']:6d} utt {s['hours']:8.3f} h  {len(s['voices_used']):4d} voices"
            f"  {s['sentences_used']:6d} sentences  {s['failures']} skipped  ({engines})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
