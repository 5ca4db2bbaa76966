"""EncodecCodec: shapes, bandwidths, streaming == offline, weights loading, input errors.

Everything runs on random weights (``pretrained=False``): no checkpoint is needed.
"""

from __future__ import annotations

import pytest
import torch

from tokenlm.codecs.encodec_backend import CHECKPOINT_NAMES, WEIGHTS_ENV, EncodecCodec
from tokenlm.errors import AudioError, CheckpointError, CodecError

HOP = 320


def _seed_codebooks(codec: EncodecCodec, wav: torch.Tensor) -> None:
    """Put the codebooks near the encoder's outputs, as k-means init does in training.

    A random 24 kHz encoder gives almost the same vector for every frame and random
    codebooks lie far from it, so every frame would get the same code and a codes
    comparison would prove nothing.
    """
    with torch.no_grad():
        r = codec.model.encoder(wav).transpose(1, 2).reshape(-1, codec.model.encoder.dimension)  # [N, D]
        for layer in codec.model.quantizer.vq.layers:
            cb = layer._codebook
            idx = torch.randint(0, r.shape[0], (cb.embed.shape[0],))
            cb.embed.copy_(r[idx] + 0.5 * r.std(0) * torch.randn_like(cb.embed))
            r = r - cb.embed[torch.cdist(r, cb.embed).argmin(1)]


def _audio(batch: int, channels: int, num_samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # noise with a loudness that changes every frame
    env = torch.rand(batch, 1, num_samples // HOP + 1, generator=g).repeat_interleave(HOP, -1)
    return 0.5 * env[..., :num_samples] * torch.randn(batch, channels, num_samples, generator=g)


@pytest.fixture(scope="module")
def codec24() -> EncodecCodec:
    torch.manual_seed(0)
    codec = EncodecCodec("24khz", pretrained=False)
    _seed_codebooks(codec, _audio(2, 1, 24000, seed=1))
    return codec


@pytest.fixture(scope="module")
def codec48() -> EncodecCodec:
    torch.manual_seed(0)
    return EncodecCodec("48khz", pretrained=False)


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


# ---- shapes, bandwidths ------------------------------------------------------------------


def test_attributes(codec24, codec48):
    assert (codec24.name, codec24.sample_rate, codec24.channels) == ("encodec_24khz", 24000, 1)
    assert (codec24.hop_length, codec24.num_codebooks, codec24.codebook_size) == (320, 32, 1024)
    assert codec24.frame_rate == 75 and codec24.bitrate() == 24000
    assert (codec48.name, codec48.sample_rate, codec48.channels) == ("encodec_48khz", 48000, 2)
    assert (codec48.hop_length, codec48.num_codebooks, codec48.codebook_size) == (320, 16, 1024)
    assert codec24.config_dict == {"name": "encodec_24khz", "model": "24khz"}
    assert codec48.config_dict == {"name": "encodec_48khz", "model": "48khz"}
    assert codec48.model.segment is None and not codec48.model.normalize and not codec48.model.training


@pytest.mark.parametrize("which,channels,num_samples", [("24khz", 1, 12000), ("48khz", 2, 24000)])
def test_shapes_and_prefix(codec24, codec48, which, channels, num_samples):
    codec = codec24 if which == "24khz" else codec48
    wav = _audio(2, channels, num_samples - 7)  # not whole frames: padded
    frames = -(-(num_samples - 7) // HOP)
    codes = codec.encode(wav)
    assert codes.shape == (2, codec.num_codebooks, frames) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < 1024
    assert codes[:, 0].unique().numel() > 1  # the test audio gives varied codes
    out = codec.decode(codes)
    assert out.shape == (2, channels, frames * HOP) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    for n in (1, 3, 4, codec.num_codebooks - 1):
        fewer = codec.encode(wav, num_codebooks=n)
        assert torch.equal(fewer, codes[:, :n])  # greedy RVQ: a prefix of the full codes
        out_n = codec.decode(fewer)
        assert out_n.shape == out.shape and torch.isfinite(out_n).all()
    assert not torch.allclose(codec.decode(codes[:, :1]), out)


def test_matches_encodec_package(codec24):
    """Offline codes and audio are encodec's own, at each of its bandwidths."""
    wav = _audio(1, 1, 40 * HOP, seed=3)
    for bandwidth in codec24.bandwidths:
        codec24.model.set_target_bandwidth(bandwidth)
        with torch.no_grad():
            [(ref, scale)] = codec24.model.encode(wav)
            ref_audio = codec24.model.decode([(ref, None)])
        assert scale is None
        codes = codec24.encode(wav, num_codebooks=codec24.num_codebooks_for(bandwidth))
        assert torch.equal(codes, ref)
        torch.testing.assert_close(codec24.decode(codes), ref_audio, rtol=0, atol=1e-6)
    codec24.model.bandwidth = None


def test_bandwidth_mapping(codec24, codec48):
    assert codec24.bandwidths == [1.5, 3.0, 6.0, 12.0, 24.0]
    assert [codec24.num_codebooks_for(b) for b in codec24.bandwidths] == [2, 4, 8, 16, 32]
    assert [codec48.num_codebooks_for(b) for b in (3, 6, 12, 24)] == [2, 4, 8, 16]
    assert [codec24.bandwidth_for(n) for n in (1, 2, 3, 8, 9, 32)] == [1.5, 1.5, 3.0, 6.0, 12.0, 24.0]
    assert [codec48.bandwidth_for(n) for n in (1, 2, 5, 16)] == [3.0, 3.0, 12.0, 24.0]
    with pytest.raises(CodecError, match="1.5"):
        codec48.num_codebooks_for(1.5)
    with pytest.raises(CodecError):
        codec24.bandwidth_for(33)


# ---- streaming ---------------------------------------------------------------------------


def _stream(codec, wav, codes, chunks):
    enc, dec, pos = [], [], 0
    with codec.streaming(wav.shape[0]):
        for n in chunks:
            enc.append(codec.encode(wav[..., pos * HOP : (pos + n) * HOP]))
            dec.append(codec.decode(codes[..., pos : pos + n]))
            pos += n
    return torch.cat(enc, -1), torch.cat(dec, -1)


@pytest.mark.parametrize(
    "padding,chunks",
    [
        ("reflect", [7, 1, 3, 0, 2, 5, 9, 1, 32]),
        ("reflect", [20, 40]),
        ("zeros", [1, 1, 2, 3, 0, 5, 8, 13, 27]),
    ],
)
def test_streaming_matches_offline(codec24, padding, chunks):
    codec = codec24
    if padding == "zeros":
        torch.manual_seed(0)
        codec = EncodecCodec("24khz", pretrained=False, padding="zeros")
        codec.load_state_dict(codec24.state_dict())
        assert codec.config_dict["padding"] == "zeros" and codec.fingerprint != codec24.fingerprint
    wav = _audio(2, 1, sum(chunks) * HOP, seed=4)
    codes = codec.encode(wav)
    audio = codec.decode(codes)
    s_codes, s_audio = _stream(codec, wav, codes, chunks)
    assert torch.equal(s_codes, codes)
    torch.testing.assert_close(s_audio, audio, rtol=0, atol=1e-4)
    # streamed decoding of fewer codebooks too
    _, s_audio3 = _stream(codec, wav, codes[:, :3], chunks)
    torch.testing.assert_close(s_audio3, codec.decode(codes[:, :3]), rtol=0, atol=1e-4)


def test_streaming_reset_one_item(codec24):
    a, b = _audio(2, 1, 30 * HOP, seed=5), _audio(1, 1, 12 * HOP, seed=6)
    ref_a, ref_b = codec24.encode(a), codec24.encode(b)
    with codec24.streaming(2):
        first = codec24.encode(a[..., : 8 * HOP])
        codec24.reset_streaming(torch.tensor([True, False]))
        second = codec24.encode(torch.cat([b, a[1:, :, 8 * HOP : 20 * HOP]]))
        third = codec24.encode(a[..., 20 * HOP :])
    assert torch.equal(first, ref_a[..., :8])
    assert torch.equal(second[0], ref_b[0]) and torch.equal(second[1], ref_a[1, :, 8:20])
    assert torch.equal(third[1], ref_a[1, :, 20:])


def test_streaming_first_chunk_too_short_with_reflect(codec24):
    with codec24.streaming(1), pytest.raises(CodecError, match="at least 7 frames"):
        codec24.encode(torch.zeros(1, 1, 2 * HOP))


def test_48khz_does_not_stream(codec48):
    assert not codec48.supports_streaming
    with pytest.raises(CodecError, match="streaming"), codec48.streaming(1):
        pass


# ---- weights -----------------------------------------------------------------------------


def test_missing_weights_says_where_to_put_them(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError) as err:
        EncodecCodec("24khz")
    msg = str(err.value)
    assert "\n" not in msg and "cannot be downloaded" in msg
    assert "encodec_24khz-d7cc33bc.th" in msg and "weights=" in msg and WEIGHTS_ENV in msg
    with pytest.raises(CheckpointError, match="encodec_48khz-7e698e3e.th"):
        EncodecCodec("48khz", weights=tmp_path)  # a folder without the file
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_ENV}=.* has no"):
        EncodecCodec("24khz")


def test_bad_weights_files(tmp_path, codec24):
    junk = tmp_path / "junk.th"
    junk.write_bytes(b"this is not a checkpoint")
    good = tmp_path / "good.th"
    torch.save(codec24.model.state_dict(), good)
    truncated = tmp_path / "truncated.th"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    wrong = tmp_path / "wrong.th"
    torch.save({"encoder.foo": torch.zeros(3)}, wrong)
    for path, pattern in [(junk, "cannot read"), (truncated, "cannot read"), (wrong, "missing keys")]:
        with pytest.raises(CheckpointError, match=pattern) as err:
            EncodecCodec("24khz", weights=path)
        assert "\n" not in str(err.value) and err.value.__cause__ is None
    with pytest.raises(CheckpointError, match="does not match"):
        EncodecCodec("48khz", weights=good)  # 24 kHz weights for the 48 kHz model
    with pytest.raises(CheckpointError, match="no such"):
        EncodecCodec("24khz", weights=tmp_path / "absent.th")


def test_weights_round_trip(tmp_path, monkeypatch, codec24):
    torch.save(codec24.model.state_dict(), tmp_path / CHECKPOINT_NAMES["24khz"])
    codes = torch.randint(0, 1024, (1, 8, 10), generator=torch.Generator().manual_seed(7))
    expected = codec24.decode(codes)
    for loaded in (
        EncodecCodec("24khz", weights=tmp_path / CHECKPOINT_NAMES["24khz"]),  # the file
        EncodecCodec("24khz", weights=tmp_path),  # the folder
    ):
        assert torch.equal(loaded.decode(codes), expected)
        assert loaded.fingerprint == codec24.fingerprint
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert EncodecCodec("24khz").fingerprint == codec24.fingerprint
    torch.manual_seed(1)
    assert EncodecCodec("24khz", pretrained=False).fingerprint != codec24.fingerprint  # env ignored


# ---- input errors (through the base class) -----------------------------------------------


def test_bad_inputs(codec24, codec48):
    with pytest.raises(CodecError, match="out of range"):
        codec24.decode(torch.full((1, 2, 3), 1024))
    with pytest.raises(CodecError, match="out of range"):
        codec24.decode(torch.full((1, 2, 3), -1))
    with pytest.raises(CodecError, match="codebooks"):
        codec48.decode(torch.zeros(1, 17, 3, dtype=torch.long))
    with pytest.raises(CodecError):
        codec24.encode(torch.zeros(1, 1, HOP), num_codebooks=33)
    with pytest.raises(AudioError, match="channel"):
        codec24.encode(torch.zeros(1, 2, HOP))
    with pytest.raises(AudioError, match="channel"):
        codec48.encode(torch.zeros(1, 1, HOP))
    with pytest.raises(CodecError, match="padding"):
        EncodecCodec("48khz", pretrained=False, padding="zeros")
