import math
import warnings

import pytest
import torch

import tokenlm.codecs as tc
from tokenlm.errors import AudioError, CodecError
from tokenlm.kernels import codebook_lookup_sum_ref, rvq_encode_ref


def test_default_preset_meets_the_bitrate_and_frame_rate_budget():
    cfg = tc.PRESETS[tc.DEFAULT_PRESET]
    assert cfg.sample_rate == 16000 and cfg.channels == 1
    assert cfg.frame_rate <= 25
    assert cfg.bitrate <= 2200
    assert cfg.hop_length * cfg.frame_rate == cfg.sample_rate


def test_shapes_and_dtypes(tiny_codec, speechlike):
    c = tiny_codec
    wav = torch.cat([speechlike, -speechlike])  # [2, 1, T]
    codes = c.encode(wav)
    f = math.ceil(wav.shape[-1] / c.hop_length)
    assert codes.shape == (2, c.num_codebooks, f) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < c.codebook_size
    out = c.decode(codes)
    assert out.shape == (2, 1, f * c.hop_length) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_odd_length_input_is_padded_to_whole_frames(tiny_codec):
    wav = torch.randn(1, 1, tiny_codec.hop_length * 3 + 17) * 0.1
    codes = tiny_codec.encode(wav)
    assert codes.shape[-1] == 4
    padded = torch.nn.functional.pad(wav, (0, tiny_codec.hop_length - 17))
    assert torch.equal(codes, tiny_codec.encode(padded))


def test_fewer_codebooks_is_a_prefix_and_lowers_bitrate(tiny_codec, speechlike):
    c = tiny_codec
    full = c.encode(speechlike)
    for n in range(1, c.num_codebooks + 1):
        part = c.encode(speechlike, num_codebooks=n)
        assert part.shape[1] == n
        assert torch.equal(part, full[:, :n])
        assert c.decode(part).shape == c.decode(full).shape
        assert c.bitrate(n) == pytest.approx(c.bitrate() * n / c.num_codebooks)


def test_more_codebooks_reconstruct_the_latent_better(speechlike):
    torch.manual_seed(0)
    c = tc.RVQCodec(tc.PRESETS["tiny"]).train()
    g = torch.Generator().manual_seed(0)
    batch = torch.cat([speechlike * a + 0.05 * torch.randn(speechlike.shape, generator=g) for a in (1, -1, 0.5, 2)] * 3)
    c(batch)  # the first training forward fits the codebooks to these 300 latents (k-means)
    c.eval()
    z = c.encoder(speechlike)
    errs = [(c.quantizer.decode(c.encode(speechlike, n)) - z).pow(2).mean().item() for n in (1, 2, 4)]
    assert errs[0] > errs[1] > errs[2]


@pytest.mark.parametrize("chunks", [[1] * 25, [3, 5, 1, 16], [25]])
def test_streaming_equals_offline(tiny_codec, speechlike, chunks):
    c = tiny_codec
    wav = torch.cat([speechlike, 0.5 * speechlike.flip(-1)])  # two different items
    codes = c.encode(wav)
    audio = c.decode(codes)
    got_codes, got_audio, pos = [], [], 0
    with c.streaming(batch_size=2):
        for n in chunks:
            chunk = wav[..., pos * c.hop_length : (pos + n) * c.hop_length]
            pos += n
            cc = c.encode(chunk)
            got_codes.append(cc)
            got_audio.append(c.decode(cc))
    assert torch.equal(torch.cat(got_codes, -1), codes)
    assert (torch.cat(got_audio, -1) - audio).abs().max() < 1e-4


def test_a_larger_decoder_reads_the_same_codes_and_streams(tiny_codec, speechlike, tmp_path):
    import dataclasses

    base = tiny_codec
    cfg = dataclasses.replace(base.config, decoder_base_channels=16, decoder_max_channels=48,
                              decoder_residual_layers=2, decoder_transformer_layers=0)
    big = tc.RVQCodec(cfg).eval()
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("decoder.")}
    missing, unexpected = big.load_state_dict(state, strict=False)
    assert not unexpected and missing and all(k.startswith("decoder.") for k in missing)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(big.decoder) > n(base.decoder) and n(big.encoder) == n(base.encoder)
    # codes (and so token files and LMs) do not depend on the decoder: same token fingerprint
    assert big.token_fingerprint == base.token_fingerprint and big.fingerprint != base.fingerprint
    assert torch.equal(big.encode(speechlike), base.encode(speechlike))
    # unset decoder fields stay out of the saved config (older codecs keep their fingerprints)
    assert not any(k.startswith("decoder_") for k in base.config.to_dict())
    assert tc.RVQCodecConfig.from_dict(cfg.to_dict()) == cfg
    loaded = tc.load(tc.save_codec(big, tmp_path / "big"))
    codes = big.encode(speechlike)
    audio = loaded.decode(codes)
    assert torch.allclose(audio, big.decode(codes), atol=1e-6)
    with loaded.streaming(1):
        parts = [loaded.decode(codes[..., i : i + 3]) for i in range(0, codes.shape[-1], 3)]
    assert (torch.cat(parts, -1) - audio).abs().max() < 1e-4


def test_a_deeper_decoder_grows_from_the_old_one_and_decodes_the_same(tiny_codec, speechlike):
    import dataclasses

    from tokenlm.codecs.rvq_codec import grow_decoder

    base = tiny_codec
    cfg = dataclasses.replace(base.config, decoder_residual_layers=2, decoder_transformer_layers=3)
    deep = tc.RVQCodec(cfg).eval()
    deep.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("decoder.")}, strict=False)
    codes = base.encode(speechlike)
    assert not torch.allclose(deep.decode(codes), base.decode(codes), atol=1e-3)
    assert grow_decoder(base, deep)
    assert len(deep.decoder.transformer.layers) == 3
    assert sum(p.numel() for p in deep.decoder.parameters()) > sum(p.numel() for p in base.decoder.parameters())
    assert torch.allclose(deep.decode(codes), base.decode(codes), atol=1e-5)
    wide = tc.RVQCodec(dataclasses.replace(base.config, decoder_base_channels=16))
    assert not grow_decoder(base, wide)  # other widths: nothing to grow from


def test_default_preset_streams_like_offline(speechlike):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.UntrainedCodecWarning)
        c = tc.load("default")
    codes = c.encode(speechlike)
    audio = c.decode(codes)
    with c.streaming(1):
        parts = [c.encode(speechlike[..., i : i + 2 * c.hop_length]) for i in range(0, 16000, 2 * c.hop_length)]
        sc = torch.cat(parts, -1)
        sa = torch.cat([c.decode(p) for p in parts], -1)
    assert torch.equal(sc, codes)
    assert (sa - audio).abs().max() < 1e-4


def test_streaming_reset_restarts_one_item_only(tiny_codec, speechlike):
    c = tiny_codec
    hop = c.hop_length
    wav = torch.cat([speechlike, speechlike])
    ref = c.encode(wav[:1, :, : 10 * hop])
    with c.streaming(2):
        c.encode(wav[..., : 5 * hop])  # both items hear 5 frames of something
        c.reset_streaming(torch.tensor([True, False]))
        a = c.encode(wav[..., : 10 * hop])
    # item 0 restarted: same as a fresh offline encode; item 1 carried history, so it differs
    assert torch.equal(a[0], ref[0])
    assert not torch.equal(a[1], ref[0])


def test_streaming_rejects_partial_frames_and_wrong_batch(tiny_codec):
    with tiny_codec.streaming(1):
        with pytest.raises(AudioError, match="whole frames"):
            tiny_codec.encode(torch.zeros(1, 1, tiny_codec.hop_length + 1))
        with pytest.raises(AudioError, match="batch"):
            tiny_codec.encode(torch.zeros(2, 1, tiny_codec.hop_length))
    assert not tiny_codec.is_streaming


def test_bad_inputs_raise_clear_errors(tiny_codec):
    c = tiny_codec
    with pytest.raises(AudioError, match="NaN"):
        c.encode(torch.full((1, 1, 640), float("nan")))
    with pytest.raises(AudioError, match="channel"):
        c.encode(torch.zeros(1, 2, 640))
    with pytest.raises(AudioError, match=r"\[B, C, T\]"):
        c.encode(torch.zeros(640))
    with pytest.raises(AudioError, match="no samples"):
        c.encode(torch.zeros(1, 1, 0))
    with pytest.raises(CodecError, match="out of range"):
        c.decode(torch.full((1, 2, 3), c.codebook_size))
    with pytest.raises(CodecError, match="out of range"):
        c.decode(torch.full((1, 2, 3), -1))
    with pytest.raises(CodecError, match="codebooks"):
        c.decode(torch.zeros(1, c.num_codebooks + 1, 3, dtype=torch.long))
    with pytest.raises(CodecError, match="integers"):
        c.decode(torch.zeros(1, 2, 3))
    with pytest.raises(CodecError, match="num_codebooks"):
        c.encode(torch.zeros(1, 1, 640), num_codebooks=0)


def test_inference_path_matches_vector_quantize_pytorch(tiny_codec, speechlike):
    """Our kernel-based encode/decode give the same codes and latents as ResidualVQ's own forward."""
    c = tiny_codec
    z = c.encoder(speechlike)
    with torch.no_grad():
        quantized, indices, _ = c.quantizer.vq(z.transpose(1, 2))
    codes = c.quantizer.encode(z, c.num_codebooks)
    assert torch.equal(codes, indices.transpose(1, 2))
    assert torch.allclose(c.quantizer.decode(codes), quantized.transpose(1, 2), atol=1e-5)


def test_kept_codebooks_follow_changes_to_the_quantizer(tiny_codec, speechlike):
    """encode/decode keep the stacked codebooks between calls; changing a codebook in place
    (EMA updates, load_state_dict) must not leave them stale."""
    import copy

    c = copy.deepcopy(tiny_codec)
    z = c.encoder(speechlike).detach()
    before = c.quantizer.encode(z, c.num_codebooks)
    with torch.no_grad():
        for layer in c.quantizer.vq.layers:
            layer._codebook.embed.copy_(layer._codebook.embed.flip(1))  # same codewords, new order
    after = c.quantizer.encode(z, c.num_codebooks)
    fresh = rvq_encode_ref(c.quantizer.vq.project_in(z.transpose(1, 2)).transpose(1, 2), c.quantizer.codebooks)
    assert torch.equal(after, fresh) and not torch.equal(after, before)
    expected = codebook_lookup_sum_ref(after, c.quantizer.codebooks)
    assert torch.allclose(c.quantizer.decode(after), c.quantizer.vq.project_out(expected.transpose(1, 2)).transpose(1, 2))


def test_kept_codebooks_follow_a_training_step(tiny_codec, speechlike):
    """EMA updates write the codebooks through ``.data`` (no version bump): after a training
    forward, encode/decode must see the updated codebooks, not the ones kept before it."""
    import copy

    c = copy.deepcopy(tiny_codec)
    z = c.encoder(speechlike).detach()
    c.eval()
    c.quantizer.encode(z, c.num_codebooks)  # keeps the stacked codebooks
    old = c.quantizer.codebooks.detach().clone()
    c.train()
    with torch.no_grad():
        c.quantizer(z + 0.5 * torch.randn_like(z))  # EMA moves the codewords
    c.eval()
    assert not torch.equal(c.quantizer.codebooks, old)
    fresh = rvq_encode_ref(c.quantizer.vq.project_in(z.transpose(1, 2)).transpose(1, 2), c.quantizer.codebooks)
    assert torch.equal(c.quantizer.encode(z, c.num_codebooks), fresh)
    expected = codebook_lookup_sum_ref(fresh, c.quantizer.codebooks)
    assert torch.allclose(c.quantizer.decode(fresh), c.quantizer.vq.project_out(expected.transpose(1, 2)).transpose(1, 2))


def test_kernel_references_agree_with_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    codebooks = torch.randn(3, 50, 8, generator=g)
    x = torch.randn(2, 8, 7, generator=g)
    codes = rvq_encode_ref(x, codebooks)
    residual = x.transpose(1, 2)
    for q in range(3):
        d = torch.cdist(residual, codebooks[q][None].expand(2, -1, -1))  # [B, F, K]
        assert torch.equal(codes[:, q], d.argmin(-1))
        residual = residual - codebooks[q][codes[:, q]]
    summed = codebook_lookup_sum_ref(codes, codebooks)
    direct = sum(codebooks[q][codes[:, q]] for q in range(3)).transpose(1, 2)
    assert torch.allclose(summed, direct, atol=1e-6)


def test_training_forward_runs_and_backpropagates(speechlike):
    torch.manual_seed(0)
    c = tc.RVQCodec(tc.PRESETS["tiny"]).train()
    out = c(torch.cat([speechlike, speechlike * 0.5])[..., : 8 * c.hop_length])
    assert out.wav.shape == (2, 1, 8 * c.hop_length)
    assert out.codes.shape == (2, c.num_codebooks, 8)
    loss = (out.wav - speechlike[..., : 8 * c.hop_length]).abs().mean() + out.commit_loss
    loss.backward()
    assert c.encoder.convs[0].conv.weight.grad is not None
    assert bool(c.quantizer.vq.layers[0]._codebook.initted)  # k-means init ran
