"""Speed-perturbed copies of a manifest's utterances (new speakers from the ones you have).

    python recipes/augment_corpus.py --manifest data/corpus/train.jsonl --out data/corpus_sp --factors 0.9 1.1
    python recipes/augment_corpus.py --manifest data/corpus60/train.jsonl --out data/corpus60_sp \\
        --engine flite --range 0.9 1.3 --seed 0

    python recipes/augment_corpus.py --manifest data/corpus60/train.jsonl --out data/corpus60_hi \\
        --engine flite --respeak-pitch 1.5 2.0 --range 1.0 1.2 --seed 0

Each selected utterance is resampled so that it plays F times faster: pitch and formants times
F, length and word times divided by F (Kaldi-style speed perturbation). Audio goes to
OUT/audio/<split>/<id>+spF.FF.wav and the manifest to OUT/<name of the input manifest> (or
--out-manifest); ids and voices get a "+spF.FF" suffix, each entry keeps its "source" id and
its "speed". --factors copies every utterance at each factor; --range draws --copies factors
per utterance from the seed and the id alone. Run the same command again to resume: files
already written are reused. Pretokenize the new manifest and pass both token folders to
train_lm.py --train.

--respeak-pitch LO HI: each selected (synthetic) utterance is spoken again by its own engine and
voice with the pitch times a factor drawn from LO..HI and the voice's spectral envelope kept, then
(with --range) played at a drawn speed: ids and voices get "+psP.PP[+spF.FF]". With 1.5-2x pitch
and 1.0-1.2x speed the two male flite voices come nearer to female ones.

--warp LO HI: each selected utterance with its formants moved by a factor drawn from LO..HI
(vocal-tract length perturbation of the spectral envelope), its spectrum tilted by up to --tilt
dB/octave and two random peaks of up to --eq dB, pitch and times unchanged: ids and voices get
"+vtA.AA".

    python recipes/augment_corpus.py --manifest data/corpus60/train.jsonl --out data/corpus60_vt \\
        --engine flite --warp 0.85 1.25 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """exit status: 0 done, 1 a problem with the input (one line on stderr), 2 bad arguments,
130 interrupted (run the same command again to resume)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="augment_corpus.py", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--manifest", required=True, help="the manifest to copy utterances from")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the new audio and manifest")
    p.add_argument("--out-manifest", metavar="PATH", help="where to write the manifest (default OUT/<input name>)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--factors", type=float, nargs="+", metavar="F", help="copy every utterance at each of these speeds")
    how.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), help="draw speeds uniformly from LO..HI")
    p.add_argument("--respeak-pitch", type=float, nargs=2, metavar=("LO", "HI"),
                   help="speak each utterance again at a pitch factor drawn from LO..HI (then --range speeds)")
    p.add_argument("--warp", type=float, nargs=2, metavar=("LO", "HI"),
                   help="move the formants by a factor drawn from LO..HI, pitch and times kept")
    p.add_argument("--tilt", type=float, default=3.0, help="with --warp: largest spectral tilt, dB/octave (default 3)")
    p.add_argument("--eq", type=float, default=6.0, help="with --warp: largest gain of the two random peaks, dB (default 6)")
    p.add_argument("--workers", type=int, default=2, help="with --respeak-pitch: synthesis processes (default 2)")
    p.add_argument("--copies", type=int, default=1, help="with --range: copies per utterance (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn speeds (default 0)")
    p.add_argument("--engine", action="append", help="only utterances of this engine (repeatable)")
    p.add_argument("--voices", help="comma-separated substrings: only utterances whose voice contains one")
    p.add_argument("--keep-original", action="store_true", help="also list the selected originals in the new manifest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.factors is None and args.range is None and args.respeak_pitch is None and args.warp is None:
        p.error("give --factors, --range, --respeak-pitch or --warp")
    if args.warp is not None and (args.factors is not None or args.range is not None or args.respeak_pitch is not None
                                  or args.copies != 1 or args.keep_original):
        p.error("--warp makes one copy per utterance on its own: without --factors, --range, --respeak-pitch, "
                "--copies or --keep-original")
    if args.respeak_pitch is not None and (args.factors is not None or args.copies != 1 or args.keep_original):
        p.error("--respeak-pitch makes one copy per utterance: use it with --range (or alone), "
                "without --factors, --copies or --keep-original")
    if args.copies < 1:
        p.error("--copies must be >= 1")
    if args.factors is not None and args.copies != 1:
        p.error("--copies goes with --range")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    from tokenlm.data.augment import perturb_manifest
    from tokenlm.data.manifest import read_manifest, write_manifest
    from tokenlm.errors import TokenLMError

    torch.set_num_threads(1)
    voices = [v for v in (args.voices or "").split(",") if v]

    def select(e: dict) -> bool:
        if args.engine and e["engine"] not in args.engine:
            return False
        return not voices or any(v in e["voice"] for v in voices)

    try:
        entries = read_manifest(args.manifest)
        out_manifest = Path(args.out_manifest) if args.out_manifest else Path(args.out) / Path(args.manifest).name
        if out_manifest.resolve() == Path(args.manifest).resolve():
            raise TokenLMError(f"{out_manifest}: would overwrite the input manifest; choose another --out")
        def bar(it, total=None):
            return tqdm(it, total=total, desc="respeak", unit="utt", disable=True if args.no_progress else None)

        if args.warp is not None:
            from tokenlm.data.augment import warp_manifest

            new = warp_manifest(entries, args.out, alpha_range=tuple(args.warp), tilt=args.tilt, eq_db=args.eq,
                                seed=args.seed, select=select,
                                progress=lambda it: tqdm(it, desc="warp", unit="utt",
                                                         disable=True if args.no_progress else None))
        elif args.respeak_pitch is not None:
            from tokenlm.data.augment import respeak_manifest

            new = respeak_manifest(entries, args.out, pitch_range=tuple(args.respeak_pitch),
                                   factor_range=tuple(args.range) if args.range else None, seed=args.seed,
                                   select=select, workers=args.workers, progress=bar,
                                   log=lambda line: print(f"augment_corpus: {line}", file=sys.stderr))
        else:
            new = perturb_manifest(
                entries,
                args.out,
                factors=args.factors,
                factor_range=tuple(args.range) if args.range else None,
                copies=args.copies,
                seed=args.seed,
                select=select,
                keep_original=args.keep_original,
                progress=lambda it: tqdm(it, desc="augment", unit="utt", disable=True if args.no_progress else None),
            )
        write_manifest(out_manifest, new)
    except TokenLMError as e:
        print(f"augment_corpus: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("augment_corpus: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    hours = sum(e["duration"] for e in new) / 3600
    print(f"{out_manifest}: {len(new)} utterances, {hours:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
