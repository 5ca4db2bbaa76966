import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

import tokenlm.codecs as tc
from tokenlm.errors import CheckpointError, CodecError, TokenLMError


@pytest.fixture
def saved(tiny_codec, tmp_path):
    return tc.save_codec(tiny_codec, tmp_path / "ckpt")


def test_round_trip_gives_identical_outputs_and_fingerprint(tiny_codec, saved, speechlike):
    loaded = tc.load(saved)
    assert isinstance(loaded, tc.RVQCodec) and not loaded.training
    assert loaded.config == tiny_codec.config
    assert loaded.fingerprint == tiny_codec.fingerprint
    assert not any(t.is_meta for t in list(loaded.parameters()) + list(loaded.buffers()))
    codes = tiny_codec.encode(speechlike)
    assert torch.equal(loaded.encode(speechlike), codes)
    assert torch.equal(loaded.decode(codes), tiny_codec.decode(codes))
    # the weights file alone carries the config
    assert tc.load(saved / "model.safetensors").fingerprint == tiny_codec.fingerprint
    assert json.loads((saved / "config.json").read_text())["config"]["num_codebooks"] == 4


def test_untrained_flag_survives_a_round_trip(saved):
    assert tc.load(saved).trained is False


def test_untrained_models_are_deterministic_and_say_so():
    with pytest.warns(tc.UntrainedCodecWarning, match="untrained"):
        a = tc.load("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = tc.load("tiny")
    assert a.fingerprint == b.fingerprint and a.trained is False


def test_bundled_default_is_trained_and_has_the_default_architecture():
    import dataclasses

    default = tc.load("default")
    assert default.trained is True
    preset = tc.PRESETS[tc.DEFAULT_PRESET]
    # training settings (e.g. the automatic dead-code threshold) may differ; the architecture may not
    training_only = {"dead_code_threshold", "kmeans_iters", "quantizer_dropout", "commitment_weight"}
    for field in dataclasses.fields(preset):
        if field.name not in training_only:
            assert getattr(default.config, field.name) == getattr(preset, field.name), field.name


def test_truncated_weights(saved):
    w = saved / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        tc.load(saved)


def test_junk_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        tc.load(tmp_path)


def test_missing_keys(saved):
    w = saved / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(w), "pt") as f:
        meta = f.metadata()
    state = load_file(str(w))
    state.pop(next(k for k in state if k.startswith("decoder")))
    save_file(state, str(w), metadata=meta)
    with pytest.raises(CheckpointError, match="1 missing"):
        tc.load(saved)


def test_config_mismatch_between_sidecar_and_weights(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["config"]["codebook_size"] = 128
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match"):
        tc.load(saved)


def test_shapes_that_do_not_fit_the_config(saved):
    w = saved / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(w), "pt") as f:
        header = json.loads(f.metadata()["tokenlm"])
    header["config"]["dimension"] = 48
    (saved / "config.json").unlink()
    save_file(load_file(str(w)), str(w), metadata={"tokenlm": json.dumps(header)})
    with pytest.raises(CheckpointError, match="config mismatch"):
        tc.load(saved)


def test_newer_version_and_unknown_fields(saved):
    w = saved / "model.safetensors"
    state = load_file(str(w))
    header = json.loads((saved / "config.json").read_text())
    (saved / "config.json").unlink()
    save_file(state, str(w), metadata={"tokenlm": json.dumps({**header, "version": 99})})
    with pytest.raises(CheckpointError, match="newer"):
        tc.load(saved)
    header["config"]["flux_capacitor"] = 1
    save_file(state, str(w), metadata={"tokenlm": json.dumps(header)})
    with pytest.raises(CheckpointError, match="unknown field"):
        tc.load(saved)


def test_unknown_name_and_foreign_safetensors(tmp_path):
    with pytest.raises(CheckpointError, match="unknown codec 'nope'"):
        tc.load("nope")
    save_file({"x": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a tokenlm codec checkpoint"):
        tc.load(tmp_path / "other.safetensors")
    with pytest.raises(TokenLMError, match="no codec checkpoint"):
        tc.load(tmp_path)


def test_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    c = tc.RVQCodec(tc.PRESETS["tiny"])
    before = c.fingerprint
    assert c.fingerprint == before  # cached
    with torch.no_grad():
        c.decoder.convs[0].conv.weight.add_(1e-3)
    assert c.fingerprint != before


def test_weights_argument_is_only_for_encodec(tmp_path):
    with pytest.raises(CheckpointError, match="EnCodec"):
        tc.load("default", weights=tmp_path)


def test_inference_only_half_precision_export(tiny_codec, tmp_path, speechlike):
    full = tc.save_codec(tiny_codec, tmp_path / "full")
    small = tc.save_codec(tiny_codec, tmp_path / "small", inference_only=True, dtype=torch.float16)
    assert (small / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = tc.load(small)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert json.loads((small / "config.json").read_text())["inference_only"] is True
    # half-precision weights: the decoded audio stays close to the float32 model's
    ref = tiny_codec.decode(tiny_codec.encode(speechlike))
    got = loaded.decode(loaded.encode(speechlike))
    assert (got - ref).pow(2).mean() < 1e-2 * ref.pow(2).mean() + 1e-8


def test_an_older_default_stays_loadable_by_name_and_by_its_codes(tiny_codec, speechlike, tmp_path, monkeypatch):
    """A newer default ships; the old one stays bundled under its own name. Token files and token
    LMs that recorded "default" with the old codes get the old codec (found by token fingerprint)."""
    import tokenlm.codecs.checkpoint as ck
    from tokenlm.cli import main
    from tokenlm.lm.tasks import load_codec_for

    old = tiny_codec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.UntrainedCodecWarning)
        new = tc.untrained("tiny", seed=1)
    new.trained = old.trained = True
    tc.save_codec(new, tmp_path / "pretrained" / "default")
    tc.save_codec(old, tmp_path / "pretrained" / "tiny16k-v1")
    (tmp_path / "pretrained" / "notes").mkdir()  # a folder without weights is no codec
    monkeypatch.setattr(ck, "PRETRAINED_DIR", tmp_path / "pretrained")
    assert list(tc.bundled_codecs()) == ["default", "tiny16k-v1"]
    assert tc.load("default").fingerprint == new.fingerprint
    assert tc.load("tiny16k-v1").fingerprint == old.fingerprint
    assert tc.bundled_for_tokens(old.token_fingerprint) == "tiny16k-v1"
    assert tc.bundled_for_tokens("0123456789abcdef") is None and tc.bundled_for_tokens(None) is None
    with pytest.raises(CheckpointError, match="tiny16k-v1"):
        tc.load("no-such-codec")

    class LM:  # what load_codec_for reads of a token LM
        codec_info = {"name": "default", "fingerprint": old.token_fingerprint}

    assert load_codec_for(LM()).fingerprint == old.fingerprint
    LM.codec_info = {"name": "default", "fingerprint": "0123456789abcdef"}  # nothing bundled fits: refused
    with pytest.raises(CodecError, match="meaningless"):
        load_codec_for(LM())

    # a token file written by the old codec when it was "default" decodes with it
    codes = old.encode(speechlike)
    tok = tc.save_tokens(tmp_path / "old.tok", codes, old, speechlike.shape[-1], codec_source="default")
    assert main(["decode", str(tok), "-o", str(tmp_path / "old.wav")]) == 0
    import soundfile as sf

    wav, _ = sf.read(tmp_path / "old.wav", dtype="float32")
    expected = old.decode(codes)[0, 0, : speechlike.shape[-1]]
    assert torch.allclose(torch.from_numpy(wav), expected, atol=2 / 32768)
    # a file no bundled codec wrote still fails in one line naming the codec it needs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.UntrainedCodecWarning)
        other = tc.untrained("tiny", seed=2)
    tc.save_tokens(tmp_path / "other.tok", other.encode(speechlike), other, speechlike.shape[-1], codec_source="default")
    assert main(["decode", str(tmp_path / "other.tok"), "-o", str(tmp_path / "x.wav")]) != 0
