"""Word error rate of an ASR model beside pocketsphinx on the same held-out files.

    python recipes/eval_asr.py --model asr --manifest data/corpus/test.jsonl --out-dir docs

Long recordings: ``--join 4`` transcribes four consecutive utterances of a voice end to end, as
``tokenlm transcribe`` would a long file (in pieces cut at pauses; ``--max-seconds 0``: in one go).
``--stream``: each recording through a streaming session, as ``tokenlm transcribe --stream`` does
(greedy unless ``--beam N``; a fresh LM context at a pause once a piece is 3 s long, ``--max-seconds 0``:
one context throughout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="asr", help="LM checkpoint folder or bundled name")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, default=Path("eval"))
    p.add_argument("--limit", type=int, help="first N utterances only")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-pocketsphinx", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--int8", action="store_true", help="the LM with int8 weights (tokenlm.lm.quantize)")
    p.add_argument("--beam", type=int, default=None, help="beam width (0: greedy; default: the Transcriber's)")
    p.add_argument("--lm", default=None, help="word language model (ARPA) for the beam search; 'none': without")
    p.add_argument("--join", type=int, default=1, metavar="N",
                   help="long recordings: N consecutive utterances of one voice end to end (--limit counts "
                        "the utterances before joining)")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="with --join: transcribe in pieces of at most S seconds cut at pauses, as "
                        "'tokenlm transcribe' does (default: its 10 s; 0: in one go)")
    p.add_argument("--stream", action="store_true",
                   help="transcribe through streaming sessions (greedy unless --beam N > 0)")
    args = p.parse_args(argv)
    if args.join < 1 or (args.max_seconds is not None and args.max_seconds < 0):
        p.error("--join must be >= 1 and --max-seconds >= 0")
    import torch

    from tokenlm.lm.evaluation import evaluate_asr

    if args.threads:
        torch.set_num_threads(args.threads)
    r = evaluate_asr(args.model, args.manifest, args.out_dir, args.limit, args.batch_size, not args.no_pocketsphinx,
                     "int8" if args.int8 else None, args.beam,
                     None if args.lm is None else False if args.lm.lower() == "none" else args.lm,
                     join=args.join, max_seconds=args.max_seconds, stream=args.stream)
    print((args.out_dir / "asr_eval.md").read_text())
    print(f"tokenlm: {r['seconds']['tokenlm']:.1f} s for {r['audio_seconds']:.0f} s of audio "
          f"({'streamed' if args.stream else 'batched'}, codec encode included); pocketsphinx: {r['seconds']['pocketsphinx']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"eval_asr: error: {e}", file=sys.stderr)
        sys.exit(1)
