"""Score the full-duplex model on held-out dialogues through the real streaming path: WER of its
answers (its inner monologue, and its speech transcribed by tokenlm's ASR and by pocketsphinx) and
how fast it stops when the user talks over it.

    python recipes/eval_duplex.py --model duplex --data data/duplex/test --out-dir docs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="duplex", help="LM checkpoint folder or bundled name")
    p.add_argument("--asr", default="asr", help="our ASR model, one of the judges ('' for none)")
    p.add_argument("--data", type=Path, required=True, help="test folder from recipes/build_duplex_data.py")
    p.add_argument("--out-dir", type=Path, default=Path("eval"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    from tokenlm.lm.evaluation import evaluate_duplex

    if args.threads:
        torch.set_num_threads(args.threads)
    evaluate_duplex(args.model, args.data, args.out_dir, args.asr or None, args.limit, args.seed)
    print((args.out_dir / "duplex_eval.md").read_text())
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"eval_duplex: error: {e}", file=sys.stderr)
        sys.exit(1)
