"""Codec quality evaluation: tokenlm's codec at each codebook count against Codec 2 and Opus.

    python recipes/eval_codec.py --manifest data/corpus/test.jsonl --limit 50 --codec default
    python recipes/eval_codec.py --audio /usr/share/codec2/wav --out-dir runs/codec_eval_real

The same as ``tokenlm eval-codec`` (same arguments); see tokenlm/evaluation.py for the metrics.
Writes codec_eval.md (also printed), codec_eval.json and codec_eval.png to --out-dir.
"""

from __future__ import annotations

import argparse
import sys

from tokenlm.errors import TokenLMError
from tokenlm.evaluation import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TokenLMError as e:
        print(f"eval_codec: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
