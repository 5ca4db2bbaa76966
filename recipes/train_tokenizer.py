"""Train the LM's sentencepiece text tokenizer on the text of speech manifests (and text files).

    python recipes/train_tokenizer.py --manifest data/corpus/train.jsonl --out runs/tokenizer.model

With ``--phones``: a phone lexicon instead (every word of the manifests and text files as flite's
voice pronounces it, one token per phone), for TTS:
    python recipes/train_tokenizer.py --phones --manifest data/corpus/train.jsonl --out runs/phones.model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, action="append", default=[], help="JSONL manifest (repeatable)")
    p.add_argument("--text", type=Path, action="append", default=[], help="text file, a sentence per line")
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--phones", action="store_true", help="a phone lexicon (flite) instead of sentencepiece pieces")
    p.add_argument("--voice", default="kal16", help="with --phones: the flite voice whose lexicon is used")
    p.add_argument("--counts", action="store_true", help="with --phones: keep word counts, which an ASR's "
                   "spelling prefers among words that sound alike (build an ASR's lexicon from training text only)")
    args = p.parse_args(argv)
    from tokenlm.data.manifest import read_manifest
    from tokenlm.data.text import text_file_sentences
    from tokenlm.errors import TokenLMError
    from tokenlm.lm.tokenizer import PhoneTokenizer, TextTokenizer

    sentences = [e["text"] for m in args.manifest for e in read_manifest(m)]
    for t in args.text:
        sentences += text_file_sentences(t)
    if not sentences:
        raise TokenLMError("no text: pass --manifest and/or --text")
    if args.phones:
        tok = PhoneTokenizer.build(sentences, args.voice, progress=True, counts=args.counts)
        tok.save(args.out)
        print(f"{args.out}: {len(tok.lexicon)} words, {tok.vocab_size} phones (digest {tok.digest})", file=sys.stderr)
        return 0
    tok = TextTokenizer.train(sentences, args.vocab_size)
    tok.save(args.out)
    print(f"{args.out}: {tok.vocab_size} pieces from {len(sentences)} sentences (digest {tok.digest})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"train_tokenizer: error: {e}", file=sys.stderr)
        sys.exit(1)
