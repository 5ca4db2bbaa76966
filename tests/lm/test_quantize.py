"""Weight-only int8 inference (tokenlm.lm.quantize): the layer, the model, the bundled ASR, the CLI."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tokenlm.lm.quantize as qz
from tokenlm.errors import CheckpointError, TokenLMError
from tokenlm.lm import LM_PRESETS, UNGENERATED, ZERO, LMConfig, LMStreamer, Streams, TokenLM, apply_delays
from tokenlm.lm.quantize import Int8Linear, is_quantized, quantize_lm

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "sample.wav"
DUPLEX = Streams.build(20, 16, 3, audio_delay=2, acoustic_delay=1, input_audio=True)


def tiny_lm(streams) -> TokenLM:
    torch.manual_seed(0)
    cfg = dict(LM_PRESETS["tiny"], streams=streams.to_list(), num_kv_heads=1, context=8)
    return TokenLM(LMConfig(**cfg)).eval()


def random_tokens(streams, b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return apply_delays(torch.stack([torch.randint(0, s.card, (b, t), generator=g) for s in streams], 1), streams)


@pytest.mark.parametrize("shape", [(48, 64), (1000, 256), (37, 128)])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "fallback"])
def test_int8_linear_matches_its_dequantized_weights(shape, kernel, monkeypatch):
    if not kernel:
        monkeypatch.setattr(qz, "_kernel_ok", lambda device_type: False)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g) / shape[1] ** 0.5
    lin = Int8Linear.from_float(w)
    assert lin.weight.dtype == torch.int8 and lin.weight.abs().max() >= 126
    # per-row rounding: each weight moves by at most half a step of its row
    step = lin.scales.float()[:, None]
    assert ((lin.dequantized() - w).abs() <= step / 2 + 1e-6).all()
    x = torch.randn(2, 3, shape[1], generator=g)
    y = lin(x)
    assert y.shape == (2, 3, shape[0]) and y.dtype == torch.float32
    ref = F.linear(x, lin.dequantized())
    # the kernel multiplies bf16 activations: ~0.4% relative error
    assert float((y - ref).norm() / ref.norm()) < 0.01
    fused = Int8Linear.cat([lin, lin])
    torch.testing.assert_close(fused(x), torch.cat([y, y], -1))


@pytest.mark.parametrize("streams", [DUPLEX, Streams.asr(20, 16, 3, text_delay=3)], ids=["duplex", "asr"])
def test_quantized_streaming_follows_the_float_model(streams):
    model = tiny_lm(streams)
    delayed, _ = random_tokens(streams, 2, 18)
    full = model(delayed)
    q = quantize_lm(tiny_lm(streams))
    assert is_quantized(q) and not is_quantized(model)
    assert q.num_parameters() == model.num_parameters()
    st = LMStreamer(q, batch_size=2)
    st.start()
    for t in range(delayed.shape[2]):
        out, logits = st.step(delayed[:, :, t], return_logits=True)
        assert torch.equal(out, delayed[:, :, t])
        for s in range(len(full)):
            ref = full[s][:, t]
            assert (logits[s] - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_quantized_models_are_for_inference_only(tmp_path):
    from tokenlm.lm.checkpoint import load_lm, save_lm

    lm = load_lm("asr", quantize="int8")
    assert is_quantized(lm.model)
    with pytest.raises(CheckpointError, match="cannot be saved"):
        save_lm(lm.model, tmp_path / "m", lm.tokenizer, task="asr", codec=lm.codec_info)
    assert not (tmp_path / "m").exists()
    with pytest.raises(TokenLMError, match="unknown quantization 'int4'"):
        load_lm("asr", quantize="int4")


@torch.no_grad()
def test_bundled_asr_int8_logits_stay_close_on_real_speech():
    """Teacher-forced on the float model's own tokens (so that one flipped near-tie cannot make the
    two runs diverge), the int8 model's text logits stay within a small distance of the float ones
    and pick the same token almost everywhere."""
    from tokenlm.lm.tasks import Transcriber

    tr = Transcriber("asr")
    codes = tr.encode(tr._load(str(SAMPLE), None))
    k, delay = len(tr.streams), tr.delay

    def run(model, forced=None):
        st = LMStreamer(model, 1)
        st.start()
        toks, logits = [], []
        for t in range(codes.shape[1] + delay):
            p = torch.full((1, k), ZERO, dtype=torch.long)
            if t < codes.shape[1]:
                p[0, 1: 1 + tr.q] = codes[: tr.q, t]
            p[0, 0] = tr.streams[0].pad_id if t < delay else (UNGENERATED if forced is None else forced[t])
            out, lg = st.step(p, return_logits=True)
            toks.append(int(out[0, 0]))
            logits.append(lg[0][0])
        return toks, torch.stack(logits[delay:])

    toks, ref = run(tr.model)
    q = quantize_lm(Transcriber("asr").model)
    _, got = run(q, forced=toks)
    assert (got - ref).abs().max() < 1.0, float((got - ref).abs().max())
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.95


def test_cli_transcribe_int8(capsys):
    from tokenlm.cli import main as cli

    assert cli(["transcribe", str(SAMPLE), "--int8"]) == 0
    assert capsys.readouterr().out.strip()


def test_serve_engines_load_int8():
    from tokenlm.server.app import load_engines

    engines, unavailable = load_engines({"asr": None}, max_sessions=2, quantize="int8")
    eng = engines["asr"]
    assert not unavailable and is_quantized(eng.model)
    with torch.inference_mode():  # as the server steps its engines
        slot = eng.open()
        out = eng.step({slot: torch.zeros(eng.hop_length)})
    assert out[slot].frame == 0
