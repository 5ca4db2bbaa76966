"""Speech data: an offline multi-voice corpus with word timings, and manifests.

- ``tokenlm.data.manifest``: the JSONL manifest every speech recipe reads
  (:func:`read_manifest`, :func:`write_manifest`, :func:`manifest_from_folder`)
- ``tokenlm.data.tts``: espeak-ng and flite in process (ctypes), returning 16 kHz audio and
  per-word start/end times from the engines' own events (:func:`synthesize`, :func:`get_engine`)
- ``tokenlm.data.text``: sentences from Debian text packages, normalized for speech
- ``tokenlm.data.augment``: speed perturbation of a manifest's utterances
  (:func:`~tokenlm.data.augment.speed_perturb`, :func:`~tokenlm.data.augment.perturb_manifest`)
- ``tokenlm.data.corpus``: :func:`build_corpus`, the deterministic corpus builder
  (``recipes/build_corpus.py`` is its command line)
"""

from .corpus import build_corpus, voice_splits
from .manifest import manifest_from_folder, read_manifest, validate_entry, write_manifest
from .text import load_sentences, normalize_text, number_to_words, year_to_words
from .tts import engine_available, get_engine, pad_silence, synthesize, trim_silence

__all__ = [
    "build_corpus",
    "voice_splits",
    "read_manifest",
    "write_manifest",
    "validate_entry",
    "manifest_from_folder",
    "load_sentences",
    "normalize_text",
    "number_to_words",
    "year_to_words",
    "synthesize",
    "get_engine",
    "engine_available",
    "pad_silence",
    "trim_silence",
]
