"""tokenlm.audio: reading, writing, resampling, channel mixing, and unusable files."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

import tokenlm.audio as audio
from tokenlm.audio import audio_info, convert_channels, load_audio, resample, save_audio
from tokenlm.errors import AudioError


def tones(sr, seconds, channels=1, seed=0):
    """A few tones plus a little noise, float32 [T, C] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * seconds))) / sr
    chans = [
        0.3 * np.sin(2 * np.pi * (220 * (c + 1)) * t) + 0.1 * np.sin(2 * np.pi * 1375 * t)
        + 0.02 * rng.standard_normal(t.size)
        for c in range(channels)
    ]
    return np.stack(chans, 1).astype(np.float32)


@pytest.mark.parametrize("ext,subtype,tol", [(".wav", "FLOAT", 0), (".wav", "PCM_16", 1 / 32768), (".flac", "PCM_16", 1 / 32768)])
def test_save_load_round_trip(tmp_path, ext, subtype, tol):
    data = tones(16000, 0.5, channels=2)
    wav = torch.from_numpy(data.T.copy())
    path = save_audio(tmp_path / f"x{ext}", wav, 16000, subtype=subtype)
    back, sr = load_audio(path)
    assert sr == 16000 and back.shape == (2, data.shape[0]) and back.dtype == torch.float32
    assert (back - wav).abs().max() <= tol
    info = audio_info(path)
    assert (info["sample_rate"], info["channels"], info["num_samples"]) == (16000, 2, data.shape[0])
    assert info["duration_s"] == pytest.approx(0.5)


def test_default_subtype_and_mono_1d(tmp_path):
    path = save_audio(tmp_path / "m.flac", torch.zeros(800), 8000)
    assert sf.info(str(path)).subtype == "PCM_16"
    assert load_audio(path)[0].shape == (1, 800)


@pytest.mark.parametrize("sr", [22050, 44100, 8000])
def test_resampling_to_16k_gives_the_right_length(tmp_path, sr):
    sf.write(str(tmp_path / "in.wav"), tones(sr, 1.0), sr)
    wav, out_sr = load_audio(tmp_path / "in.wav", sample_rate=16000)
    assert out_sr == 16000 and wav.shape == (1, 16000)
    # a length that is not a whole number of periods: ceil(T * new / old)
    x = torch.randn(1, 12345)
    assert resample(x, sr, 16000).shape[-1] == math.ceil(12345 * 16000 / sr)
    assert resample(x, 16000, 16000) is x


def test_resampled_tone_keeps_its_frequency(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    sf.write(str(tmp_path / "a.wav"), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    wav, _ = load_audio(tmp_path / "a.wav", sample_rate=16000)
    spectrum = torch.fft.rfft(wav[0]).abs()
    assert int(spectrum.argmax()) == 440  # 1 s of audio: bin k is k Hz


def test_stereo_to_mono_and_back(tmp_path):
    left, right = tones(16000, 0.25, seed=1)[:, 0], tones(16000, 0.25, seed=2)[:, 0] * 0.5
    sf.write(str(tmp_path / "st.wav"), np.stack([left, right], 1), 16000, subtype="FLOAT")
    mono, _ = load_audio(tmp_path / "st.wav", channels=1)
    assert mono.shape == (1, left.size)
    assert torch.allclose(mono[0], torch.from_numpy((left + right) / 2), atol=1e-6)
    stereo, _ = load_audio(tmp_path / "st.wav", channels=2)
    assert stereo.shape == (2, left.size)
    up = convert_channels(mono, 2)
    assert up.shape == (2, left.size) and torch.equal(up[0], up[1]) and torch.equal(up[0], mono[0])
    batched = convert_channels(torch.randn(3, 2, 10), 1)
    assert batched.shape == (3, 1, 10)


def test_mono_file_to_stereo_and_resample_together(tmp_path):
    sf.write(str(tmp_path / "m.wav"), tones(22050, 0.5), 22050)
    wav, sr = load_audio(tmp_path / "m.wav", sample_rate=16000, channels=2)
    assert sr == 16000 and wav.shape == (2, 8000) and torch.equal(wav[0], wav[1])


# ---- unusable input -----------------------------------------------------------------------


def assert_audio_error(path, match, **kw):
    with pytest.raises(AudioError, match=match) as e:
        load_audio(path, **kw)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_junk_file(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"this is not audio, just text " * 20)
    assert_audio_error(tmp_path / "junk.wav", "cannot read audio")
    with pytest.raises(AudioError, match="junk.wav"):
        audio_info(tmp_path / "junk.wav")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    assert_audio_error(tmp_path / "empty.wav", "empty")


def test_zero_sample_wav(tmp_path):
    sf.write(str(tmp_path / "silent.wav"), np.zeros((0, 1), np.float32), 16000)
    assert_audio_error(tmp_path / "silent.wav", "no samples", sample_rate=16000)


def test_nan_samples(tmp_path):
    data = tones(16000, 0.1)
    data[100, 0] = np.nan
    data[200, 0] = np.inf
    sf.write(str(tmp_path / "nan.wav"), data, 16000, subtype="FLOAT")
    assert_audio_error(tmp_path / "nan.wav", "2 NaN or infinite")


def test_missing_path_and_directory(tmp_path):
    assert_audio_error(tmp_path / "nope.wav", "no such file")
    assert_audio_error(tmp_path, "directory")


# ---- writing ------------------------------------------------------------------------------


def test_unsupported_extension(tmp_path):
    with pytest.raises(AudioError, match=r"\.mp3"):
        save_audio(tmp_path / "x.mp3", torch.zeros(1, 100), 16000)
    assert not (tmp_path / "x.mp3").exists()


def test_bad_waveforms_are_refused(tmp_path):
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "x.wav", torch.tensor([[0.0, float("nan")]]), 16000)
    with pytest.raises(AudioError, match="shape"):
        save_audio(tmp_path / "x.wav", torch.zeros(1, 1, 100), 16000)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    save_audio(path, torch.full((1, 1000), 0.25), 16000)
    before = path.read_bytes()

    def failing_write(file, data, *args, **kwargs):
        with open(file, "wb") as f:
            f.write(b"RIFF partial")  # a half-written temporary file ...
        raise RuntimeError("disk full")  # ... then the write fails

    monkeypatch.setattr(audio.sf, "write", failing_write)
    with pytest.raises(AudioError, match="disk full"):
        save_audio(path, torch.zeros(1, 1000), 16000)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]  # no temporary file left
