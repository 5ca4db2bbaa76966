import pytest
import torch

from tokenlm.lm import UNGENERATED, ZERO, Streams, StreamSpec, apply_delays, place_words, undo_delays


@pytest.mark.parametrize("delays", [[0, 0, 0], [0, 2, 3], [5, 0, 1], [1, 1, 1]])
def test_delays_round_trip(delays):
    g = torch.Generator().manual_seed(sum(delays))
    x = torch.randint(0, 50, (2, 3, 11), generator=g)
    delayed, valid = apply_delays(x, delays, fill=[-7, ZERO, 99])
    assert delayed.shape == (2, 3, 11 + max(delays)) and valid.shape == delayed.shape
    assert torch.equal(undo_delays(delayed, delays), x)
    for k, d in enumerate(delays):
        assert torch.equal(delayed[:, k, d: d + 11], x[:, k])
        assert valid[:, k].sum(-1).tolist() == [11, 11]
        assert not valid[:, k, :d].any() and (delayed[:, k, :d] == [-7, ZERO, 99][k]).all()


def test_delays_respect_lengths_and_stream_fills():
    streams = Streams.tts(text_card=10, audio_card=16, num_codebooks=2, audio_delay=2)
    x = torch.randint(0, 10, (2, 3, 6))
    delayed, valid = apply_delays(x, streams, lengths=torch.tensor([6, 4]))
    assert streams.delays == [0, 2, 3]
    assert valid[1, 0].tolist() == [True] * 4 + [False] * 5
    assert (delayed[1, 0, 4:] == streams[0].pad_id).all()  # text fill: PAD
    assert (delayed[1, 1, 6:] == ZERO).all() and (delayed[:, 2, :3] == ZERO).all()  # audio fill: ZERO


def test_special_ids_and_layouts():
    asr = Streams.asr(text_card=100, audio_card=1024, num_codebooks=8, text_delay=6)
    assert len(asr) == 9 and asr.generated == [0] and asr.delays == [6] + [0] * 8
    t = asr[0]
    assert (t.pad_id, t.epad_id, t.start_id, t.input_vocab, t.output_vocab) == (100, 101, 102, 103, 102)
    a = asr[1]
    assert (a.start_id, a.input_vocab, a.output_vocab, a.fill_id) == (1024, 1025, 1024, ZERO)
    with pytest.raises(ValueError, match="no PAD"):
        _ = a.pad_id
    duplex = Streams.build(100, 64, 4, audio_delay=2, acoustic_delay=1, input_audio=True)
    assert [s.name for s in duplex][-4:] == ["in_0", "in_1", "in_2", "in_3"]
    assert duplex.generated == [0, 1, 2, 3, 4] and duplex.delays[:5] == [0, 2, 3, 3, 3]
    assert Streams(duplex.to_list()) == duplex
    with pytest.raises(ValueError, match="unique"):
        Streams([StreamSpec("a", "text", 3), StreamSpec("a", "audio", 3)])
    with pytest.raises(ValueError, match="generated"):
        Streams([StreamSpec("a", "audio", 3, generated=False)])
    assert UNGENERATED != ZERO


def test_place_words_puts_tokens_at_word_starts():
    stream, placed = place_words([[5, 6], [7], [8, 9, 1]], [0.0, 0.12, 0.5], frame_rate=25, num_frames=20,
                                 pad_id=50, epad_id=51)
    # word 0 wants frame 0 but needs an EPAD before it -> frame 1; word 1 (frame 3) is free
    assert stream.tolist()[:6] == [51, 5, 6, 51, 7, 50]
    assert stream[11:15].tolist() == [51, 8, 9, 1] and placed == 3
    # a word that overlaps the previous one is pushed later; one that does not fit is dropped
    stream, placed = place_words([[1, 2, 3], [4], [5, 6]], [0.1, 0.1, 0.75], 25, 19, 50, 51)
    assert stream.tolist()[1:8] == [51, 1, 2, 3, 51, 4, 50] and placed == 2


def test_place_words_marks_the_end_of_speech():
    stream, placed = place_words([[5, 6], [7]], [0.1, 0.2], 25, 12, 50, 51, end_time=0.37)
    assert stream.tolist() == [50, 51, 5, 6, 51, 7, 50, 50, 50, 51, 50, 50] and placed == 2
    # the mark never lands on a word's tokens
    stream, _ = place_words([[5, 6], [7]], [0.1, 0.2], 25, 12, 50, 51, end_time=0.0)
    assert stream.tolist()[:7] == [50, 51, 5, 6, 51, 7, 51]


def test_augment_codes_masks_spans_and_adds_noise_without_touching_the_input():
    from tokenlm.lm.data import augment_codes

    codes = torch.randint(0, 64, (4, 500))
    before = codes.clone()
    g = torch.Generator().manual_seed(0)
    out = augment_codes(codes, g, time_masks=3, mask_frames=20)
    assert torch.equal(codes, before)
    masked = (out == ZERO).all(dim=0)
    assert ((out == ZERO) == masked[None]).all()  # whole frames, every codebook
    assert 0 < int(masked.sum()) <= 60 and torch.equal(out[:, ~masked], codes[:, ~masked])
    noisy = augment_codes(codes, torch.Generator().manual_seed(1), code_noise=0.3, card=64)
    changed = float((noisy != codes).float().mean())
    assert 0.25 < changed < 0.32  # 0.3 replaced, 1/64 of them by the same code
    assert noisy.min() >= 0 and noisy.max() < 64
    again = augment_codes(codes, torch.Generator().manual_seed(1), code_noise=0.3, card=64)
    assert torch.equal(noisy, again)
    assert torch.equal(augment_codes(codes, g), codes)  # nothing asked: a copy
    with pytest.raises(ValueError, match="card"):
        augment_codes(codes, g, code_noise=0.1)
