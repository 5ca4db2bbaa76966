"""Beam search for a phone ASR, with its lexicon and a word n-gram language model.

Greedy decoding (:func:`tokenlm.lm.tasks.greedy_transcribe`) writes, at each frame, the text
stream's most likely token and spells each finished word's phones afterwards. :func:`beam_transcribe`
keeps the ``beam`` best token histories instead. A history's score is the ASR's log-probability of
its tokens plus, for each word it finishes (a run of phones ended by PAD or EPAD):

- ``lm_weight`` x the word's log-probability under the n-gram model (:class:`~tokenlm.lm.wordlm.NGramLM`)
  after the words before it, the word being the lexicon's word with exactly these phones (the most
  likely in context among homophones), else the most likely one a single phone edit away, at an
  extra ``edit_penalty``; a run near no pronunciation writes no word and costs ``oov_penalty``;
- ``word_bonus`` (insertion bonus, which balances the language model's cost per word);

and at the end the language model's end-of-sentence probability. Histories that have written the
same words and stand at the same place in a word are merged (the better one is kept). Each history
is a row of one :class:`~tokenlm.lm.generate.LMStreamer` (``batch x beam`` rows), reordered
after every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .generate import LMStreamer
from .streams import ZERO

__all__ = ["BeamSettings", "BeamSearch", "beam_frame", "beam_transcribe", "lexicon_for"]


@dataclass(frozen=True)
class BeamSettings:
    """The search's width and costs (natural-log units). The defaults were tuned for the bundled
    phone ASR on 48-96 validation utterances (held-out espeak-ng variants; see recipes/README.md):
    the word error rate moved by about a point over lm_weight 0.2-0.4 and word_bonus 2-3."""

    beam: int = 8
    lm_weight: float = 0.3
    word_bonus: float = 2.0
    edit_penalty: float = 3.0
    oov_penalty: float = 2.0
    expand: int = 6  # tokens tried per history and frame (the most likely ones)


@dataclass
class _Hyp:
    score: float = 0.0
    words: tuple = ()  # (word, start_frame, end_frame) per written word
    hist: tuple = ("<s>",)  # the language model's view: the words so far
    run: tuple = ()  # phone ids of the word being said
    run_start: int = 0
    run_last: int = 0
    last: int = -1  # last token (-1: none yet)


class _Lexicon:
    """Phones -> the words that sound so, with the language model's choice among them."""

    def __init__(self, tokenizer, lm):
        self.tok, self.lm = tokenizer, lm
        self.by_pron: dict[tuple[str, ...], list[str]] = {}
        for w, pron in tokenizer.lexicon.items():
            if pron:
                self.by_pron.setdefault(tuple(pron.split()), []).append(w)
        self._memo: dict[tuple, tuple[str, float]] = {}

    def word(self, run: tuple[int, ...], hist: tuple[str, ...], s: BeamSettings) -> tuple[str, float]:
        """``(word, log-score)`` for a finished run of phones after ``hist`` ("" when none fits)."""
        h = hist[-(self.lm.order - 1):] if self.lm is not None and self.lm.order > 1 else ()
        key = (run, h, s.lm_weight, s.edit_penalty, s.oov_penalty)
        got = self._memo.get(key)
        if got is not None:
            return got
        phones = tuple(self.tok.phones[i] for i in run)
        cands = [(w, 0.0) for w in self.by_pron.get(phones, ())]
        if not cands:
            cands = [(w, -s.edit_penalty) for k in self.tok._neighbours(phones) for w in self.by_pron.get(k, ())]
        best, rank = ("", -s.oov_penalty), None
        counts = self.tok.counts
        for w, extra in cands:
            sc = extra + (s.lm_weight * self.lm.logprob(w, h) if self.lm is not None else 0.0)
            r = (-sc, -counts.get(w, 0), len(w), w)  # ties: the more frequent, shorter word, as spell does
            if rank is None or r < rank:
                best, rank = (w, sc), r
        if len(self._memo) > 500_000:
            self._memo.clear()
        self._memo[key] = best
        return best


def lexicon_for(tokenizer, lm) -> _Lexicon:
    """The lexicon view of a phone tokenizer with a language model (kept: building it takes a moment)."""
    key = (id(tokenizer), id(lm))
    got = _LEXICONS.get(key)
    if got is None or got.tok is not tokenizer or got.lm is not lm:
        got = _Lexicon(tokenizer, lm)
        _LEXICONS.clear()
        _LEXICONS[key] = got
    return got


_LEXICONS: dict[tuple[int, int], _Lexicon] = {}


def _finish_run(hyp: _Hyp, lex: _Lexicon, s: BeamSettings, end: int) -> _Hyp:
    """``hyp`` with its word (phone run) over at frame ``end``: written, scored, run emptied."""
    word, sc = lex.word(hyp.run, hyp.hist, s)
    out = _Hyp(hyp.score + sc, hyp.words, hyp.hist, (), hyp.run_start, hyp.run_last, hyp.last)
    if word:
        out.words = hyp.words + ((word, hyp.run_start, max(end, hyp.run_start + 1)),)
        out.hist = hyp.hist + (word,)
        out.score += s.word_bonus
    return out


class BeamSearch:
    """The beam of one utterance: :meth:`advance` takes a frame's top tokens per history and keeps
    the best extensions; :meth:`stable_words` are the words every history agrees on (final, for
    streaming); :meth:`result` ends the search."""

    def __init__(self, lexicon: _Lexicon, settings: BeamSettings, card: int, pad: int, epad: int):
        self.lex, self.s, self.card, self.pad, self.epad = lexicon, settings, card, pad, epad
        self.hyps: list[_Hyp] = [_Hyp()]
        self.frames = 0

    def advance(self, top_v: list[list[float]], top_i: list[list[int]]) -> list[int]:
        """One text frame. ``top_v/top_i[i]``: log-probabilities and ids of the tokens tried after
        history ``i``. Returns, for each of the ``beam`` rows, the history it now continues (rows
        past the kept ones repeat the best). As in greedy decoding (:class:`~tokenlm.lm.tasks.WordDecoder`),
        a word's phones run until EPAD, which ends the word (PADs between its phones are skipped)."""
        s, card, f = self.s, self.card, self.frames
        cands: dict[tuple, tuple[float, int, _Hyp]] = {}
        for i, hyp in enumerate(self.hyps):
            for v, tok in zip(top_v[i], top_i[i]):
                if tok < card:  # a phone: continues the word, or starts one
                    new = _Hyp(hyp.score + v, hyp.words, hyp.hist, hyp.run + (tok,),
                               hyp.run_start if hyp.run else f, f, tok)
                elif tok == self.epad and hyp.run:  # the word is over
                    new = _finish_run(hyp, self.lex, s, f)
                    new.score += v
                    new.last = tok
                else:
                    new = _Hyp(hyp.score + v, hyp.words, hyp.hist, hyp.run, hyp.run_start, hyp.run_last, tok)
                key = (new.words, new.run, tok < card)
                old = cands.get(key)
                if old is None or new.score > old[0]:
                    cands[key] = (new.score, i, new)
        width = max(1, s.beam)
        kept = sorted(cands.values(), key=lambda c: -c[0])[:width]
        self.hyps = [c[2] for c in kept]
        self.frames += 1
        parents = [c[1] for c in kept]
        return parents + [parents[0]] * (width - len(parents))

    def tokens(self) -> list[int]:
        """The token each row wrote last (what the model reads next), one per row."""
        last = [max(h.last, 0) for h in self.hyps]
        return last + [last[0]] * (max(1, self.s.beam) - len(last))

    def stable_words(self) -> int:
        """How many words (with their times) every history has written alike: they are final."""
        first = self.hyps[0].words
        n = len(first)
        for h in self.hyps[1:]:
            m = 0
            while m < min(n, len(h.words)) and h.words[m] == first[m]:
                m += 1
            n = m
        return n

    def words(self, upto: int | None, frame_rate: float, final: bool = False) -> list:
        """The best history's first ``upto`` words (all when None) as :class:`~tokenlm.lm.tasks.Word` s."""
        from .tasks import Word

        ws = self.best(final).words
        return [Word(w, round(a / frame_rate, 3), round(b / frame_rate, 3)) for w, a, b in ws[:upto]]

    def best(self, final: bool = False) -> _Hyp:
        """The best history; ``final``: with its open word finished and the end of sentence scored."""
        if not final:
            return self.hyps[0]
        lm, s = self.lex.lm, self.s
        finals = []
        for hyp in self.hyps:
            done = _finish_run(hyp, self.lex, s, hyp.run_last + 1) if hyp.run else hyp
            if lm is not None:
                h = done.hist[-(lm.order - 1):] if lm.order > 1 else ()
                done = _Hyp(done.score + s.lm_weight * lm.logprob("</s>", h), done.words, done.hist)
            finals.append(done)
        return max(finals, key=lambda h: h.score)


@torch.no_grad()
def beam_transcribe(model, tokenizer, items: list[torch.Tensor], frame_rate: float, lm=None,
                    settings: BeamSettings | None = None) -> list[list]:
    """Beam-search transcription of a batch of ``codes [Q, F]`` with a phone ASR (text stream first,
    then the audio codebooks it reads). ``lm``: an :class:`~tokenlm.lm.wordlm.NGramLM` or None
    (lexicon only). Returns a list of :class:`~tokenlm.lm.tasks.Word` per item."""
    if not getattr(tokenizer, "lexicon", None):
        raise ValueError("beam search needs a phone ASR (a tokenizer with a lexicon)")
    s = settings or BeamSettings()
    streams = model.streams
    delay, q = streams[0].delay, sum(1 for st in streams if st.kind == "audio")
    card, pad, epad = tokenizer.vocab_size, streams[0].pad_id, streams[0].epad_id
    b, k, w = len(items), len(streams), max(1, s.beam)
    lex = lexicon_for(tokenizer, lm)
    searches = [BeamSearch(lex, s, card, pad, epad) for _ in items]
    st = LMStreamer(model, b * w)
    st.start()
    lengths = [c.shape[1] for c in items]
    n_expand = min(s.expand, card + 2)
    for t in range(max(lengths) + delay):
        frame = torch.full((b * w, k), ZERO, dtype=torch.long)
        for j, c in enumerate(items):
            if t < lengths[j]:
                frame[j * w: (j + 1) * w, 1: 1 + q] = c[:q, t].cpu()
        if t < delay:
            frame[:, 0] = pad
            st.step(frame)
            continue
        h = st.temporal_step()
        logp = model.depth.incremental(0, h, None, st._depth_cache).float().log_softmax(-1)
        top_v, top_i = (x.cpu().tolist() for x in logp.topk(n_expand, dim=-1))
        for j in range(b):
            if t - delay >= lengths[j]:
                frame[j * w: (j + 1) * w, 0] = pad  # this item is done: its rows idle
        beam_frame(st, model, {j: bs for j, bs in enumerate(searches) if t - delay < lengths[j]}, frame, w,
                   n_expand)
    return [bs.words(None, frame_rate, final=True) for bs in searches]


def beam_frame(st: LMStreamer, model, searches: dict[int, BeamSearch], frame: torch.Tensor, width: int,
               expand: int) -> None:
    """One text frame of the searches over a streamer whose rows come in blocks of ``width`` (block
    ``j``: rows ``j * width`` ..., one per history of ``searches[j]``): the temporal step over the
    previous frame, the text stream's ``expand`` best tokens per row, each search's
    :meth:`BeamSearch.advance`, the rows reordered to follow their histories and ``frame [rows, K]``
    committed with each history's token in the text stream (rows outside ``searches`` keep the text
    token ``frame`` gives them; only the streamer's live rows move)."""
    h = st.temporal_step()
    logp = model.depth.incremental(0, h, None, st._depth_cache).float().log_softmax(-1)
    top_v, top_i = (x.cpu().tolist() for x in logp.topk(min(expand, logp.shape[-1]), dim=-1))
    order = list(range(st.batch_size))
    for j, bs in searches.items():
        rows = slice(j * width, (j + 1) * width)
        order[rows] = [j * width + p for p in bs.advance(top_v[rows], top_i[rows])]
        frame[rows, 0] = torch.tensor(bs.tokens())
    st.reorder(order)
    st.commit(frame)
