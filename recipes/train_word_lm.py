"""Train the word n-gram language model that an ASR's beam search uses (an ARPA file).

    python recipes/train_word_lm.py --corpus data/corpus60 --out runs/lm/words.arpa.gz \
        --valid data/corpus60/valid.jsonl

Its text: ``--corpus DIR`` takes every *training* sentence of a corpus that ``build_corpus.py``
made (all of its sentence pool's train part, spoken or not: the same sentences again from the
corpus's recorded settings; valid and test sentences are never among them), ``--manifest`` the
transcripts of a manifest, ``--text`` a file with a sentence per line; any mix, repeatable.
Interpolated Kneser-Ney (``tokenlm.lm.wordlm.NGramLM``); a larger model built elsewhere from your
own text (KenLM's ``lmplz``, SRILM) is read the same way. Prints the perplexity on ``--valid``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def corpus_train_sentences(corpus: Path) -> list[str]:
    """The train part of the sentence pool a ``build_corpus.py`` corpus drew from."""
    from tokenlm.data import text as text_mod
    from tokenlm.data.corpus import split_sentences_for_corpus
    from tokenlm.errors import TokenLMError

    try:
        info = json.loads((corpus / "corpus.json").read_text())
        st = info["settings"]
    except (OSError, ValueError, KeyError) as e:
        raise TokenLMError(f"{corpus}: not a build_corpus.py corpus ({e})") from None
    note = st.get("sentences", {})
    if "sources" not in note:
        raise TokenLMError(f"{corpus}: its sentences were not drawn from text sources; pass its text with --text")
    pool = text_mod.load_sentences(note["sources"], st["min_words"], st["max_words"], note.get("text_files", []))
    if note.get("sha256_16") and text_mod.sentences_digest(pool) != note["sha256_16"]:
        raise TokenLMError(f"{corpus}: its sentence pool cannot be rebuilt here (the text packages differ)")
    parts = split_sentences_for_corpus(pool, st["seed"], st["valid_fraction"], st["test_fraction"])
    return parts["train"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, action="append", default=[], metavar="DIR",
                   help="a build_corpus.py corpus: all of its training sentences (repeatable)")
    p.add_argument("--manifest", type=Path, action="append", default=[], help="JSONL manifest's transcripts (repeatable)")
    p.add_argument("--text", type=Path, action="append", default=[], help="text file, a sentence per line (repeatable)")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--min-count", type=int, nargs="+", default=[1, 1, 2], metavar="N",
                   help="fewest occurrences kept per order (default 1 1 2: trigrams seen once are cut)")
    p.add_argument("--discount", type=float, default=0.75, help="Kneser-Ney absolute discount (default 0.75)")
    p.add_argument("--valid", type=Path, action="append", default=[], metavar="MANIFEST",
                   help="report the perplexity on this manifest's transcripts")
    p.add_argument("--out", type=Path, required=True, help="ARPA file to write (.arpa or .arpa.gz)")
    args = p.parse_args(argv)
    from tokenlm.data.manifest import read_manifest
    from tokenlm.data.text import text_file_sentences
    from tokenlm.errors import TokenLMError
    from tokenlm.lm.wordlm import NGramLM

    t0 = time.time()
    sentences: list[str] = []
    for c in args.corpus:
        sentences += corpus_train_sentences(c)
    sentences += [e["text"] for m in args.manifest for e in read_manifest(m)]
    for t in args.text:
        sentences += text_file_sentences(t)
    if not sentences:
        raise TokenLMError("no text: pass --corpus, --manifest and/or --text")
    lm = NGramLM.train(sentences, args.order, args.discount, args.min_count)
    lm.save(args.out)
    sizes = {n: sum(1 for g in lm.probs if len(g) == n) for n in range(1, lm.order + 1)}
    print(f"{len(sentences)} sentences -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB; "
          + ", ".join(f"{c} {n}-grams" for n, c in sizes.items()) + f") in {time.time() - t0:.0f} s")
    for m in args.valid:
        ppl = lm.perplexity(e["text"] for e in read_manifest(m))
        print(f"perplexity on {m}: {ppl:.1f}")
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
