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


def test_spell_reads_phones_back_as_the_likeliest_word():
    data = {"format": "tokenlm-phones", "version": 1, "engine": "flite", "voice": "kal16",
            "phones": sorted(tk.CMU_PHONES), "lexicon": {"to": "t uw", "two": "t uw", "too": "t uw", "cat": "k ae t",
                                                         "cats": "k ae t s", "mat": "m ae t"},
            "counts": {"to": 9, "two": 2, "too": 1, "cat": 3, "cats": 1, "mat": 1}}
    tok = PhoneTokenizer(json.dumps(data).encode())
    ids = {p: i for i, p in enumerate(tok.phones)}
    say = lambda s: [ids[p] for p in s.split()]  # noqa: E731
    assert tok.spell(say("t uw")) == "to"  # homophones: the most frequent
    assert tok.spell(say("k ae t s")) == "cats" and tok.spell(say("m ae t")) == "mat"
    assert tok.spell(say("k ae d")) == "cat"  # one substitution away
    assert tok.spell(say("k ae t s iy")) == "cats"  # one insertion
    assert tok.spell(say("ae t")) == "cat"  # one deletion: the more frequent of cat/mat
    assert tok.spell(say("k ae t ih ng z")) == ""  # further off: nothing (mostly a spurious word)
    assert tok.spell([]) == "" and tok.spell([10_000]) == ""
    assert lexicon().spell(say("k ae t")) == ""  # an empty lexicon spells nothing


def test_words_decoder_writes_phone_asr_output_as_words():
    from tokenlm.lm.tasks import WordDecoder

    tok = lexicon(the="dh ax", cat="k ae t", sat="s ae t")
    dec = WordDecoder(tok, frame_rate=10.0)
    pad, epad = tok.vocab_size, tok.vocab_size + 1
    stream = [pad, epad, *tok.encode_word("the"), epad, *tok.encode_word("cat"), pad, epad, *tok.encode_word("sat")]
    words = [w for t, x in enumerate(stream) for w in dec.push(t, x)] + dec.flush()
    assert [w.word for w in words] == ["the", "cat", "sat"]
    assert words[1].start == 0.5 and words[1].end == 0.9 and words[2].start == 1.0


@pytest.mark.skipif(not tts.engine_available("flite"), reason="needs libflite1 (make speech-deps)")
def test_build_with_counts_keeps_word_frequencies_and_spells_back():
    tok = PhoneTokenizer.build(["The cat sat on the mat.", "the end"], counts=True)
    assert tok.counts == {"the": 3, "cat": 1, "sat": 1, "on": 1, "mat": 1, "end": 1}
    assert all(tok.spell(tok.encode_word(w)) == w for w in tok.lexicon)
    assert "counts" not in json.loads(PhoneTokenizer.build(["the cat"]).proto)  # as before without counts


def test_lexicon_constraint_allows_only_the_lexicons_words():
    from tokenlm.lm.tasks import LexiconConstraint, lexicon_constraint

    tok = lexicon(cat="k ae t", cats="k ae t s", at="ae t")
    ids = {p: i for i, p in enumerate(tok.phones)}
    pad, epad = tok.vocab_size, tok.vocab_size + 1
    lex = LexiconConstraint(tok, batch_size=2)
    allowed = lambda row: {i for i in range(tok.vocab_size + 2) if lex.allowed()[row, i]}  # noqa: E731
    assert allowed(0) == {pad, epad}  # between words: no phone before an EPAD
    lex.update(0, epad)
    assert allowed(0) == {ids["k"], ids["ae"], pad}  # a word's first phone (or the end-of-speech PAD)
    for ph in ("k", "ae"):
        lex.update(0, ids[ph])
        assert pad not in allowed(0) and epad not in allowed(0)  # "k", "k ae": not words yet
    lex.update(0, ids["t"])
    assert allowed(0) == {ids["s"], pad, epad}  # "cat" is whole; "cats" goes on
    lex.update(0, pad)
    assert allowed(0) == {pad, epad} and allowed(1) == {pad, epad}  # rows keep their own place
    assert lexicon_constraint(TextTokenizer.train(["the cat sat"] * 20, vocab_size=12), 1) is None
