"""Token files: exact round trips, bit packing, metadata, and every way a file can be wrong."""

import dataclasses
import json
import math
import struct
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

import tokenlm.codecs as tc
from tokenlm.codecs.base import Codec
from tokenlm.codecs.tokenfile import bits_per_code, load_tokens, pack_codes, save_tokens, unpack_codes
from tokenlm.errors import CodecError, TokenFileError


class FakeCodec(Codec):
    """A weightless codec of any codebook geometry (decode returns silence)."""

    name = "fake"

    def __init__(self, codebook_size=1024, num_codebooks=8, hop_length=320, sample_rate=16000):
        super().__init__()
        self.sample_rate, self.channels, self.hop_length = sample_rate, 1, hop_length
        self.codebook_size, self.num_codebooks = codebook_size, num_codebooks

    @property
    def config_dict(self):
        return {"name": self.name, "codebook_size": self.codebook_size, "num_codebooks": self.num_codebooks,
                "hop_length": self.hop_length, "sample_rate": self.sample_rate}

    def _decode(self, codes):
        return torch.zeros(codes.shape[0], 1, codes.shape[-1] * self.hop_length)


def rewrite(path, out=None, meta_update=None, payload=None):
    """Copy a token file with changed metadata and/or payload (simulates other writers / tampering)."""
    with safe_open(str(path), framework="np") as f:
        meta = json.loads(f.metadata()["tokenlm"])
        data = f.get_tensor("codes")
    meta.update(meta_update or {})
    save_file({"codes": data if payload is None else payload}, str(out or path), metadata={"tokenlm": json.dumps(meta)})
    return out or path


def header_bytes(path):
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + n


@pytest.fixture
def tokfile(tiny_codec, speechlike, tmp_path):
    n = speechlike.shape[-1] - 100  # not a whole number of frames
    codes = tiny_codec.encode(speechlike[..., :n])
    return save_tokens(tmp_path / "speech.tok", codes, tiny_codec, n, codec_source="tiny"), codes, n


# ---- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("codebook_size", [2, 64, 1000, 1024, 2048])
@pytest.mark.parametrize("q", [1, 3, 8])
def test_round_trip_is_exact_and_bit_packed(tmp_path, codebook_size, q):
    codec = FakeCodec(codebook_size=codebook_size)
    g = torch.Generator().manual_seed(codebook_size + q)
    f = 37
    codes = torch.randint(0, codebook_size, (q, f), generator=g)
    codes[0, 0], codes[-1, -1] = 0, codebook_size - 1  # the extremes survive
    num_samples = f * codec.hop_length - 5
    path = save_tokens(tmp_path / "x.tok", codes, codec, num_samples)
    tf = load_tokens(path)
    assert tf.codes.dtype == torch.int64 and torch.equal(tf.codes, codes)
    bits = math.ceil(math.log2(codebook_size))
    assert tf.meta["bits_per_code"] == bits == bits_per_code(codebook_size)
    # exactly the safetensors header plus the packed payload, nothing per code beyond `bits`
    assert path.stat().st_size == header_bytes(path) + math.ceil(q * f * bits / 8)
    assert tf.file_bytes == path.stat().st_size
    assert (tf.num_codebooks, tf.num_frames, tf.num_samples) == (q, f, num_samples)
    assert tf.bitrate_kbps == pytest.approx(50.0 * q * bits / 1000)


def test_pack_unpack_low_level():
    codes = np.array([[0, 1, 2, 1023], [512, 7, 1000, 3]])
    payload = pack_codes(codes, 10)
    assert payload.dtype == np.uint8 and payload.size == 10  # 80 bits
    assert np.array_equal(unpack_codes(payload, 8, 10).reshape(2, 4), codes)
    # documented bit order: LSB first, filling each byte from its least significant bit
    assert list(pack_codes(np.array([1, 2]), 2)) == [0b1001]
    assert bits_per_code(1) == 1 and bits_per_code(2) == 1 and bits_per_code(1025) == 11


def test_batched_codes_and_fewer_codebooks(tiny_codec, speechlike, tmp_path):
    codes = tiny_codec.encode(speechlike, num_codebooks=2)  # [1, 2, F]
    tf = load_tokens(save_tokens(tmp_path / "a.tok", codes, tiny_codec, speechlike.shape[-1]))
    assert torch.equal(tf.codes, codes[0]) and tf.num_codebooks == 2
    assert tf.decode(tiny_codec).shape == (1, speechlike.shape[-1])


def test_metadata_and_info(tokfile, tiny_codec):
    path, codes, n = tokfile
    tf = load_tokens(path)
    m = tf.meta
    assert m["format"] == "tokenlm-tokens" and m["version"] == 1
    assert m["codec"] == tiny_codec.name and m["codec_fingerprint"] == tiny_codec.fingerprint
    assert m["codec_config"] == tiny_codec.config_dict and m["codec_source"] == "tiny"
    assert m["created_by"].startswith("tokenlm ")
    info = tf.info()
    json.dumps(info)  # JSON-ready
    expected = {
        "sample_rate": 16000, "frame_rate": 25.0, "num_codebooks": 4, "codebook_size": 64,
        "num_frames": codes.shape[-1], "num_samples": n, "codec": "tokenlm-rvq", "hop_length": 640,
        "codec_fingerprint": tiny_codec.fingerprint, "bits_per_code": 6, "file_bytes": path.stat().st_size,
    }
    assert {k: info[k] for k in expected} == expected
    assert info["duration_s"] == pytest.approx(n / 16000)
    assert info["bitrate_kbps"] == pytest.approx(25 * 4 * 6 / 1000)
    assert "speech.tok" in repr(tf)


def test_decode_trims_to_original_length(tokfile, tiny_codec):
    path, codes, n = tokfile
    wav = load_tokens(path).decode(tiny_codec)
    assert wav.shape == (1, n) and wav.dtype == torch.float32
    assert torch.allclose(wav, tiny_codec.decode(codes)[0, :, :n])


# ---- the wrong codec ----------------------------------------------------------------------


def test_other_architecture_is_refused(tokfile):
    path, _, _ = tokfile
    other = tc.RVQCodec(dataclasses.replace(tc.PRESETS["tiny"], codebook_size=128))
    tf = load_tokens(path)
    with pytest.raises(TokenFileError, match="written by codec") as e:
        tf.decode(other)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "--codec tiny" in msg and "codebook size 64" in msg


def test_other_weights_are_refused(tokfile):
    path, _, _ = tokfile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = tc.untrained("tiny", seed=1)
    with pytest.raises(TokenFileError, match="different weights"):
        load_tokens(path).check_codec(other)


def test_a_retrained_decoder_may_decode(tokfile, tiny_codec):
    path, codes, _ = tokfile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = tc.untrained("tiny")
    with torch.no_grad():
        for p in other.decoder.parameters():
            p.mul_(1.01)
    assert other.fingerprint != tiny_codec.fingerprint
    assert other.token_fingerprint == tiny_codec.token_fingerprint
    tf = load_tokens(path)
    assert tf.meta["codec_token_fingerprint"] == tiny_codec.token_fingerprint
    tf.check_codec(other)  # same encoder and codebooks: the codes mean the same
    assert tf.decode(other).shape == tf.decode(tiny_codec).shape
    with torch.no_grad():
        next(other.encoder.parameters()).mul_(1.01)
    with pytest.raises(TokenFileError, match="different weights"):
        tf.check_codec(other)


def test_other_sample_rate_is_refused(tokfile):
    path, _, _ = tokfile
    with pytest.raises(TokenFileError, match="16000 Hz"):
        load_tokens(path).check_codec(FakeCodec(codebook_size=64, sample_rate=24000))


# ---- broken files -------------------------------------------------------------------------


def one_line_error(path, match):
    with pytest.raises(TokenFileError, match=match) as e:
        load_tokens(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_empty_junk_directory(tmp_path):
    one_line_error(tmp_path / "nope.tok", "no such file")
    (tmp_path / "empty.tok").write_bytes(b"")
    one_line_error(tmp_path / "empty.tok", "empty")
    (tmp_path / "junk.tok").write_bytes(b"RIFF this is not a token file at all" * 10)
    one_line_error(tmp_path / "junk.tok", "not a safetensors file")
    one_line_error(tmp_path, "directory")


def test_truncated(tokfile):
    path, _, _ = tokfile
    data = path.read_bytes()
    for cut in (len(data) - 3, 40, 5):
        path.write_bytes(data[:cut])
        one_line_error(path, "truncated")


def test_codec_checkpoint_is_not_a_token_file(tiny_codec, tmp_path):
    ckpt = tc.save_codec(tiny_codec, tmp_path / "ckpt")
    one_line_error(ckpt / "model.safetensors", "codec checkpoint")
    one_line_error(ckpt, "codec checkpoint")


def test_foreign_safetensors(tmp_path):
    save_file({"weight": np.zeros(4, np.float32)}, str(tmp_path / "model.tok"))
    one_line_error(tmp_path / "model.tok", "without tokenlm metadata")


def test_newer_version(tokfile, tmp_path):
    path, _, _ = tokfile
    one_line_error(rewrite(path, tmp_path / "v2.tok", {"version": 2}), "newer")


def test_payload_size_mismatch(tokfile, tmp_path):
    path, codes, _ = tokfile
    one_line_error(rewrite(path, tmp_path / "f.tok", {"num_frames": codes.shape[-1] + 4}), "payload")
    one_line_error(rewrite(path, tmp_path / "q.tok", {"num_codebooks": 3}), "payload")


def test_corrupt_metadata(tokfile, tmp_path):
    path, _, _ = tokfile
    one_line_error(rewrite(path, tmp_path / "a.tok", {"num_frames": "many"}), "num_frames")
    one_line_error(rewrite(path, tmp_path / "b.tok", {"codebook_size": 4096}), "bits per code")
    one_line_error(rewrite(path, tmp_path / "c.tok", {"num_samples": 10**9}), "num_samples")


def test_out_of_range_codes_rejected_at_save(tiny_codec, tmp_path):
    path = tmp_path / "x.tok"
    path.write_bytes(b"previous contents")
    codes = torch.zeros(4, 10, dtype=torch.long)
    codes[2, 3] = 64  # tiny has 64 entries per codebook
    with pytest.raises(CodecError, match="out of range"):
        save_tokens(path, codes, tiny_codec, 6400)
    with pytest.raises(CodecError, match="codebooks"):
        save_tokens(path, torch.zeros(5, 10, dtype=torch.long), tiny_codec, 6400)
    with pytest.raises(TokenFileError, match="num_samples"):
        save_tokens(path, codes.clamp(max=63), tiny_codec, 6401)
    with pytest.raises(TokenFileError, match="shape"):
        save_tokens(path, torch.zeros(2, 4, 10, dtype=torch.long), tiny_codec, 6400)
    # failed saves leave the existing file alone and no temporary files behind
    assert path.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tok"]


def test_out_of_range_codes_rejected_at_load(tiny_codec, tmp_path):
    codes = torch.full((4, 10), 55)
    path = save_tokens(tmp_path / "x.tok", codes, tiny_codec, 6400)
    # a smaller codebook_size in the metadata (same 6 bits per code) makes code 55 invalid
    one_line_error(rewrite(path, meta_update={"codebook_size": 50}), "holds code 55")
