"""Intelligibility of a TTS model: WER of its speech for held-out sentences, transcribed by
pocketsphinx (independent) and by tokenlm's ASR.

    python recipes/eval_tts.py --model tts --manifest data/corpus/test.jsonl --limit 50 --out-dir docs

Long texts: ``--join 3`` speaks paragraphs of three consecutive sentences (``--max-words 0``: each
in one go, as the TTS did before it spoke long texts sentence by sentence).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tts", help="LM checkpoint folder or bundled name")
    p.add_argument("--asr", default="asr", help="our ASR model used as a second judge ('' for none)")
    p.add_argument("--asr-beam", type=int, default=None, metavar="N",
                   help="our ASR's beam width (0: greedy; default: its own, a beam search when it ships a word LM)")
    p.add_argument("--manifest", type=Path, required=True, help="held-out sentences: the manifest's texts")
    p.add_argument("--out-dir", type=Path, default=Path("eval"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature of the speech codes "
                   "(default: as 'tokenlm speak')")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest codes (default: as "
                   "'tokenlm speak')")
    p.add_argument("--timing-temperature", type=float, default=None, metavar="T",
                   help="sampling temperature of where each word starts (default: as 'tokenlm speak', greedy)")
    p.add_argument("--candidates", type=int, default=1, metavar="N",
                   help="speak each sentence N times and keep the take our ASR hears best (as 'tokenlm speak "
                        "--candidates'); our ASR's column is then not an independent judge")
    p.add_argument("--join", type=int, default=1, metavar="N",
                   help="speak paragraphs of N consecutive sentences (long texts; --limit counts paragraphs)")
    p.add_argument("--max-words", type=int, default=None, metavar="W",
                   help="texts of more than W words are spoken in pieces, sentence by sentence (default: as "
                        "'tokenlm speak'; 0: every text in one go)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1). Sampling is bitwise reproducible from --seed for a given "
                        "thread count; another count changes the float sums and so some sampled tokens")
    args = p.parse_args(argv)
    if min(x for x in (args.temperature, args.top_k, args.timing_temperature, 0) if x is not None) < 0:
        p.error("--temperature, --timing-temperature and --top-k must be >= 0")
    if args.candidates < 1:
        p.error("--candidates must be >= 1")
    if args.join < 1 or (args.max_words is not None and args.max_words < 0):
        p.error("--join must be >= 1 and --max-words >= 0")
    import torch

    from tokenlm.data.manifest import read_manifest
    from tokenlm.lm.evaluation import evaluate_tts

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seen, sentences = set(), []
    for e in read_manifest(args.manifest):
        if e["text"] not in seen:
            seen.add(e["text"])
            sentences.append(e["text"])
    sampling = {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k),
                                  ("timing_temperature", args.timing_temperature)) if v is not None}
    texts = [" ".join(sentences[i: i + args.join]) for i in range(0, len(sentences), args.join)]
    evaluate_tts(args.model, texts[: args.limit], args.out_dir, args.asr or None, args.seed,
                 asr_beam=args.asr_beam, candidates=args.candidates, max_words=args.max_words,
                 unit=f"paragraphs of {args.join} sentences" if args.join > 1 else "sentences", **sampling)
    print((args.out_dir / "tts_eval.md").read_text())
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"eval_tts: error: {e}", file=sys.stderr)
        sys.exit(1)
