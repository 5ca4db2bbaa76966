"""A word n-gram language model for ASR decoding, in the ARPA format.

:meth:`NGramLM.train` counts a text's words (normalised like the tokenizers' :func:`words_of`) and
builds an interpolated Kneser-Ney model (absolute discount, continuation counts for the lower
orders), stored the way ARPA files store such models: each kept n-gram with its interpolated
log10 probability, each context with its back-off weight (the discounted mass it leaves for the
lower order). :meth:`NGramLM.save` writes a plain or gzipped ARPA file and :meth:`NGramLM.load`
reads one, ours or any other tool's (KenLM's ``lmplz``, SRILM), so a larger model built elsewhere
from your own text can take the bundled one's place.

:meth:`NGramLM.logprob` is the natural-log probability of a word after its history, with
``<s>`` and ``</s>`` as the sentence's edges; a word the model does not know gets ``<unk>``'s
probability (or :data:`UNK_LOG10` when the file has none).
"""

from __future__ import annotations

import gzip
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import CheckpointError
from .tokenizer import words_of

__all__ = ["NGramLM", "BOS", "EOS", "UNK"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
UNK_LOG10 = -7.0
LN10 = math.log(10.0)


class NGramLM:
    def __init__(self, order: int, probs: dict[tuple[str, ...], float], backoffs: dict[tuple[str, ...], float]):
        """``probs``: n-gram -> log10 probability; ``backoffs``: context -> log10 back-off weight."""
        if order < 1:
            raise ValueError("an n-gram model needs order >= 1")
        self.order, self.probs, self.backoffs = order, probs, backoffs
        self.vocab = {g[0] for g in probs if len(g) == 1}
        self._memo: dict[tuple[str, ...], float] = {}

    # ---- scoring
    def log10prob(self, word: str, history: Sequence[str] = ()) -> float:
        """log10 P(word | the last ``order - 1`` words of history), backing off as ARPA says."""
        hist = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        key = hist + (word,)
        got = self._memo.get(key)
        if got is not None:
            return got
        if word not in self.vocab:
            word = UNK
        if word not in self.vocab:
            value = UNK_LOG10
        else:
            value, h = 0.0, hist
            while True:
                p = self.probs.get(h + (word,))
                if p is not None:
                    value += p
                    break
                value += self.backoffs.get(h, 0.0)
                h = h[1:]
        if len(self._memo) > 1_000_000:
            self._memo.clear()
        self._memo[key] = value
        return value

    def logprob(self, word: str, history: Sequence[str] = ()) -> float:
        """Natural-log P(word | history)."""
        return self.log10prob(word, history) * LN10

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """Natural-log probability of a whole sentence, ``</s>`` included."""
        hist, total = [BOS], 0.0
        for w in list(words) + [EOS]:
            total += self.logprob(w, hist)
            hist.append(w)
        return total

    def perplexity(self, sentences: Iterable[str]) -> float:
        """Per-word perplexity (``</s>`` counted as a word) of texts normalised like the training text."""
        total, n = 0.0, 0
        for s in sentences:
            ws = words_of(s)
            total += self.sentence_logprob(ws)
            n += len(ws) + 1
        return math.exp(-total / max(n, 1))

    # ---- training
    @classmethod
    def train(cls, sentences: Iterable[str], order: int = 3, discount: float = 0.75,
              min_count: Sequence[int] = (1, 1, 2)) -> NGramLM:
        """Interpolated Kneser-Ney from raw ``sentences``. ``min_count[n-1]``: the fewest times an
        n-gram of the highest order must occur to be kept (lower orders by their continuation
        counts), an entry per order (the last one repeats); what is cut goes to its context's
        back-off mass. Every word seen is kept as a unigram."""
        if order < 1:
            raise ValueError("an n-gram model needs order >= 1")
        if not 0 < discount < 1:
            raise ValueError("the discount must be in (0, 1)")
        counts: list[Counter] = [Counter() for _ in range(order)]
        for s in sentences:
            ws = [BOS] + words_of(s) + [EOS]
            if len(ws) == 2:
                continue
            for n in range(1, order + 1):
                for i in range(max(0, 1 if n == 1 else 0), len(ws) - n + 1):
                    counts[n - 1][tuple(ws[i: i + n])] += 1
        if not counts[0]:
            raise ValueError("no words to build a language model from")
        # lower orders count distinct left contexts (continuation counts); n-grams that begin the
        # sentence have no left context and keep their raw count
        kn: list[Counter] = [Counter() for _ in range(order)]
        kn[order - 1] = counts[order - 1]
        for n in range(1, order):
            for g in counts[n]:  # g has n + 1 words: it continues its suffix g[1:]
                kn[n - 1][g[1:]] += 1
            for g, c in counts[n - 1].items():
                if g[0] == BOS:
                    kn[n - 1][g] = c
        keep = list(min_count) + [min_count[-1]] * order

        probs: dict[tuple[str, ...], float] = {}  # log10, as stored
        backoffs: dict[tuple[str, ...], float] = {}
        # unigrams: discounted continuation counts, the discounted mass spread evenly over the
        # vocabulary and <unk>
        vocab = sorted({g[0] for g in kn[0]} | {EOS})
        total = sum(kn[0].values())
        spread = discount * len(kn[0]) / total / (len(vocab) + 1)
        for w in vocab:
            probs[(w,)] = math.log10(max(kn[0].get((w,), 0) - discount, 0) / total + spread)
        probs[(UNK,)] = math.log10(spread)
        probs[(BOS,)] = -99.0  # never predicted; there as a context
        model = cls(order, probs, backoffs)
        for n in range(2, order + 1):
            table = kn[n - 1]
            ctx_total: dict[tuple[str, ...], float] = defaultdict(float)
            ctx_types: Counter = Counter()
            for g, c in table.items():
                ctx_total[g[:-1]] += c
                ctx_types[g[:-1]] += 1
            new: dict[tuple[str, ...], float] = {}
            mass: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])  # kept: here, below
            for g, c in table.items():
                if c < keep[n - 1]:
                    continue
                h = g[:-1]
                below = 10 ** model.log10prob(g[-1], h[1:])
                gamma = discount * ctx_types[h] / ctx_total[h]
                new[g] = (c - discount) / ctx_total[h] + gamma * below
                mass[h][0] += new[g]
                mass[h][1] += below
            for g, p in new.items():
                probs[g] = math.log10(p)
            for h in ctx_total:
                here, below = mass[h] if h in mass else (0.0, 0.0)
                # what the context's entries leave, over what the lower order gives the rest: exact
                # normalisation (equal to the interpolation weight when nothing was cut)
                backoffs[h] = math.log10(max(1.0 - here, 1e-12) / max(1.0 - below, 1e-12))
            model = cls(order, probs, backoffs)
        return model

    # ---- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write an ARPA file (gzipped when the name ends in ``.gz``)."""
        p = Path(path)
        by_order: list[list[tuple[str, ...]]] = [[] for _ in range(self.order)]
        for g in self.probs:
            by_order[len(g) - 1].append(g)
        for lst in by_order:
            lst.sort()
        lines = ["", "\\data\\"] + [f"ngram {n + 1}={len(lst)}" for n, lst in enumerate(by_order)]
        for n, lst in enumerate(by_order):
            lines += ["", f"\\{n + 1}-grams:"]
            for g in lst:
                bo = self.backoffs.get(g)
                tail = f"\t{bo:.6f}" if bo is not None and n + 1 < self.order else ""
                lines.append(f"{self.probs[g]:.6f}\t{' '.join(g)}{tail}")
        lines += ["", "\\end\\", ""]
        data = "\n".join(lines).encode("utf-8")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        if p.name.endswith(".gz"):
            # no name, mtime 0: the same model gives the same bytes
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                f.write(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> NGramLM:
        """Read an ARPA file (plain or gzipped)."""
        p = Path(path)
        try:
            raw = p.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            text = raw.decode("utf-8")
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
            raise CheckpointError(f"{p}: cannot read language model ({getattr(e, 'strerror', None) or e})") from None
        probs: dict[tuple[str, ...], float] = {}
        backoffs: dict[tuple[str, ...], float] = {}
        declared: dict[int, int] = {}
        section = 0
        ended = False
        try:
            for line in text.splitlines():
                line = line.strip()
                if not line:
                    continue
                if line.startswith("ngram ") and section == 0:
                    n, c = line[6:].split("=")
                    declared[int(n)] = int(c)
                elif line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1:-7])
                elif line == "\\end\\":
                    ended = True
                    break
                elif section:
                    parts = line.split()
                    g = tuple(parts[1: 1 + section])
                    if len(g) != section:
                        raise ValueError(f"short {section}-gram line {line[:60]!r}")
                    probs[g] = float(parts[0])
                    if len(parts) > 1 + section:
                        backoffs[g] = float(parts[1 + section])
        except ValueError as e:
            why = "it stops early: truncated?" if "\\end\\" not in text and declared else str(e)
            raise CheckpointError(f"{p}: not an ARPA language model ({why})") from None
        if not declared or not ended:
            raise CheckpointError(f"{p}: not an ARPA language model (no \\data\\ header or no \\end\\: truncated?)")
        got = Counter(len(g) for g in probs)
        for n, c in declared.items():
            if got.get(n, 0) != c:
                raise CheckpointError(f"{p}: the header declares {c} {n}-grams, the file holds {got.get(n, 0)}")
        return cls(max(declared), probs, backoffs)
