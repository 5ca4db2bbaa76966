"""Build the full-duplex clip banks: the grammar's questions spoken by many voices, the answers in
the model's voice, encoded with the codec (see tokenlm.lm.duplex).

    python recipes/build_duplex_data.py --out data/duplex --tokenizer tokenlm/lm/pretrained/duplex/tokenizer.model

writes data/duplex/{train,valid,test}/bank.safetensors (and, for test, the user's audio as WAV files
with dialogues.jsonl, for recipes/eval_duplex.py). The splits use the speech corpus's voice
splits, so valid and test questions are spoken by voices never heard in training. Train a model on
them with recipes/train_lm.py --task duplex --train data/duplex/train --valid data/duplex/valid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, required=True, help="sentencepiece model of the LM's text stream")
    p.add_argument("--codec", default="default", help="codec name or path (tokenlm.codecs.load)")
    p.add_argument("--codebooks", type=int, default=4, help="codebooks per frame (user and model audio)")
    p.add_argument("--variants", type=int, nargs=3, default=[100, 6, 10], metavar=("TRAIN", "VALID", "TEST"),
                   help="voice/prosody draws per question in each split")
    p.add_argument("--dialogues", type=int, nargs=3, default=[3000, 64, 100], metavar=("TRAIN", "VALID", "TEST"),
                   help="dialogues per split")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each dialogue")
    p.add_argument("--answer-variants", type=int, default=3, help="speaking rates per answer")
    p.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    import tokenlm.codecs as tc
    from tokenlm.lm.duplex import build_dialogues
    from tokenlm.lm.tokenizer import TextTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    codec = tc.load(args.codec).eval()
    tokenizer = TextTokenizer.load(args.tokenizer)
    variants = dict(zip(["train", "valid", "test"], args.variants))
    dialogues = dict(zip(["train", "valid", "test"], args.dialogues))
    for split in args.splits:
        path = build_dialogues(args.out / split, codec, tokenizer, split=split, dialogues=dialogues[split],
                               frames=int(round(args.seconds * codec.frame_rate)), variants=variants[split],
                               answer_variants=args.answer_variants, num_codebooks=args.codebooks, seed=args.seed,
                               write_wavs=split == "test", codec_name=str(args.codec))
        print(f"{path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"build_duplex_data: error: {e}", file=sys.stderr)
        sys.exit(1)
