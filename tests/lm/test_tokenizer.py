"""Text tokenizers: the phone lexicon (TTS) beside sentencepiece, told apart when loaded."""

import json

import pytest

from tokenlm.data import tts
from tokenlm.errors import CheckpointError
from tokenlm.lm import tokenizer as tk
from tokenlm.lm.tokenizer import PhoneTokenizer, TextTokenizer, load_tokenizer, tokenizer_from_bytes


def lexicon(**words):
    data = {"format": "tokenlm-phones", "version": 1, "engine": "flite", "voice": "kal16",
            "phones": sorted(tk.CMU_PHONES), "lexicon": words}
    return PhoneTokenizer(json.dumps(data, sort_keys=True).encode())


def test_phone_tokenizer_encodes_words_and_round_trips(tmp_path):
    tok = lexicon(cat="k ae t", sat="s ae t")
    assert tok.vocab_size == len(tk.CMU_PHONES)
    assert tok.decode(tok.encode_word("cat")) == "k ae t"
    assert tok.encode_words(["cat", "sat"])[1][1:] == tok.encode_word("cat")[1:]  # the same "ae t"
    assert tok.decode(tok.encode_word("cat sat")) == "k ae t s ae t"  # a hyphenated word's parts
    assert tok.words("The cat sat, 2 times!") == ["the", "cat", "sat", "two", "times"]
    path = tok.save(tmp_path / "tokenizer.model")
    again = load_tokenizer(path)
    assert isinstance(again, PhoneTokenizer) and again.digest == tok.digest and again.lexicon == tok.lexicon
    assert lexicon(cat="k ae t").digest != lexicon(cat="k aa t").digest


def test_words_outside_the_lexicon_fall_back_to_letters_without_flite(monkeypatch):
    monkeypatch.setattr(tk, "flite_pronounce", lambda word, voice="kal16": None)
    tok = lexicon(cat="k ae t")
    assert tok.decode(tok.encode_word("box")) == "b aa k s"
    assert tok.encode_word("cat") and tok.decode(tok.encode_word("cat")) == "k ae t"


@pytest.mark.skipif(not tts.engine_available("flite"), reason="needs libflite1 (make speech-deps)")
def test_build_uses_flite_and_reaches_new_words():
    tok = PhoneTokenizer.build(["The cat sat on the mat."])
    assert set(tok.lexicon) == {"the", "cat", "sat", "on", "mat"}
    assert tok.decode(tok.encode_word("cat")) == "k ae t"
    assert tok.decode(tok.encode_word("dog")) == "d ao g"  # not in the lexicon: flite says it
    assert tok.vocab_size == len(tk.CMU_PHONES)


def test_load_tells_sentencepiece_and_lexicons_apart_and_refuses_junk(tmp_path):
    sp = TextTokenizer.train(["the cat sat on the mat", "a dog and a cat"] * 20, vocab_size=20)
    assert isinstance(tokenizer_from_bytes(sp.proto), TextTokenizer)
    assert isinstance(tokenizer_from_bytes(lexicon(cat="k ae t").proto), PhoneTokenizer)
    for junk in (b"{not json", b'{"format": "other"}', b"\x00\x01garbage"):
        (tmp_path / "bad.model").write_bytes(junk)
        with pytest.raises(CheckpointError, match="bad.model"):
            load_tokenizer(tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match="cannot read tokenizer"):
        load_tokenizer(tmp_path / "missing.model")
