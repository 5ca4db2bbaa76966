"""The token LM: parallel text/audio streams with delays, a temporal + depth transformer, streaming
generation.

- ``tokenlm.lm.streams``: :class:`StreamSpec`, :class:`Streams` (ASR / TTS / duplex layouts), special
  ids, :func:`apply_delays` / :func:`undo_delays`, :func:`place_words` (text on word-start frames)
- ``tokenlm.lm.model``: :class:`LMConfig`, :class:`TokenLM` (forward, loss)
- ``tokenlm.lm.generate``: :class:`LMStreamer` (batched sessions, ring KV cache), :class:`Sampling`
- ``tokenlm.lm.tasks``: ``Transcriber`` (ASR) and ``Speaker`` (TTS) on top of the codec
- ``tokenlm.lm.beam``: beam search for a phone ASR with its lexicon and a word language model
- ``tokenlm.lm.wordlm``: ``NGramLM``, a Kneser-Ney word n-gram model read and written as ARPA files
"""

from .generate import LMStreamer, Sampling, sample
from .model import LM_PRESETS, LMConfig, TokenLM
from .streams import UNGENERATED, ZERO, Streams, StreamSpec, apply_delays, place_words, undo_delays

__all__ = [
    "ZERO",
    "UNGENERATED",
    "StreamSpec",
    "Streams",
    "apply_delays",
    "undo_delays",
    "place_words",
    "LMConfig",
    "TokenLM",
    "LM_PRESETS",
    "LMStreamer",
    "Sampling",
    "sample",
]
