import pytest
import torch

from tokenlm.lm import (
    LM_PRESETS,
    UNGENERATED,
    ZERO,
    LMConfig,
    LMStreamer,
    Sampling,
    Streams,
    TokenLM,
    apply_delays,
    sample,
)


def tiny_lm(streams, **over) -> TokenLM:
    torch.manual_seed(0)
    cfg = dict(LM_PRESETS["tiny"], streams=streams.to_list(), num_kv_heads=1, context=8)
    cfg.update(over)
    return TokenLM(LMConfig(**cfg)).eval()


def random_tokens(streams, b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, s.card, (b, t), generator=g) for s in streams], dim=1)
    return apply_delays(x, streams)


DUPLEX = Streams.build(20, 16, 3, audio_delay=2, acoustic_delay=1, input_audio=True)


def codec_feature_lm(streams, dc=6, seed=0) -> TokenLM:
    model = tiny_lm(streams, codec_features=dc)
    g = torch.Generator().manual_seed(seed)
    model.set_codec_codebooks(torch.randn(3, 16, dc, generator=g) * torch.tensor([3.0, 1.0, 0.3])[:, None, None])
    # training moves the tables away from their zero start: make them matter in the test too
    with torch.no_grad():
        for t in model.embed.tables:
            t.weight.add_(torch.randn(t.weight.shape, generator=g) * 0.02)
    return model


@pytest.mark.parametrize("streams,features", [(DUPLEX, False), (Streams.asr(20, 16, 3, text_delay=3), False),
                                              (DUPLEX, True)], ids=["duplex", "asr", "duplex-codec-features"])
def test_streaming_with_cache_equals_full_forward(streams, features):
    # 21 frames > context (8): the ring cache wraps and the sliding window is exercised
    model = codec_feature_lm(streams) if features else tiny_lm(streams)
    delayed, _ = random_tokens(streams, 2, 18)
    full = model(delayed)
    st = LMStreamer(model, batch_size=2)
    st.start()
    for t in range(delayed.shape[2]):
        out, logits = st.step(delayed[:, :, t], return_logits=True)
        assert torch.equal(out, delayed[:, :, t])  # provided tokens are forced and passed through
        for s in range(len(full)):
            torch.testing.assert_close(logits[s], full[s][:, t], atol=2e-5, rtol=1e-4)


def test_streamer_follows_weight_changes():
    # the streamer keeps fused copies of some weights; loading new ones in place must reach them
    model, other = tiny_lm(DUPLEX), tiny_lm(DUPLEX, num_layers=2)
    torch.manual_seed(1)
    other = TokenLM(other.config).eval()
    delayed, _ = random_tokens(DUPLEX, 2, 4)
    st = LMStreamer(model, 2)
    st.start()
    st.step(delayed[:, :, 0])
    model.load_state_dict(other.state_dict())
    st.start()
    ref = other(delayed)
    for t in range(delayed.shape[2]):
        _, logits = st.step(delayed[:, :, t], return_logits=True)
        for s in range(len(ref)):
            torch.testing.assert_close(logits[s], ref[s][:, t], atol=2e-5, rtol=1e-4)


def test_codec_features_embed_codes_by_their_vectors():
    streams = Streams.asr(20, 16, 3, text_delay=3)
    model = tiny_lm(streams, codec_features=4)
    with pytest.raises(ValueError, match="do not fit"):
        model.set_codec_codebooks(torch.randn(3, 16, 5))
    with pytest.raises(ValueError, match="takes no codebooks"):
        tiny_lm(streams).set_codec_codebooks(torch.randn(3, 16, 4))
    cb = torch.randn(4, 16, 4)  # a codec may have more codebooks than the model uses
    cb[0, 5] = cb[0, 9]  # two codes of codebook 0 that mean the same vector
    model.set_codec_codebooks(cb)
    w = model.embed.weights()
    a0 = [i for i, s in enumerate(streams) if s.name == "audio_0"][0]
    torch.testing.assert_close(w[a0][5], w[a0][9])  # same vector, same embedding at the start
    assert not torch.equal(w[a0][5], w[a0][6])
    # the summed latent is scaled to unit rms; the special rows (START) keep their own embedding
    full = model.embed.codebooks.pow(2).sum(-1).mean(-1).sum() / 4
    assert abs(float(full) - 1.0) < 1e-4
    assert w[a0].shape[0] == streams[a0].input_vocab and w[a0][16].abs().sum() > 0
    # gradients reach both the projection and the tables
    delayed, valid = random_tokens(streams, 2, 6)
    model.train()
    model.loss(delayed, valid)[0].backward()
    assert model.embed.feature_proj.weight.grad.abs().sum() > 0
    assert model.embed.tables[a0].weight.grad.abs().sum() > 0


def test_retarget_codec_resets_what_names_codes_and_keeps_the_rest():
    # a duplex model with codec features generates audio and reads it: both sides name codes
    model = codec_feature_lm(DUPLEX)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="needs the new codec's codebooks"):
        model.retarget_codec()
    new = torch.randn(3, 16, 6)
    model.retarget_codec(new)
    after = model.state_dict()
    # the summed latent of the new codebooks at unit rms, in place of the old ones
    full = model.embed.codebooks
    assert abs(float(full.pow(2).sum(-1).mean(-1).sum() / 6) - 1.0) < 1e-4
    torch.testing.assert_close(full / full.norm(), new / new.norm())
    gen = [DUPLEX[i] for i in DUPLEX.generated]
    for i, (table, c, card) in enumerate(zip(model.embed.tables, model.embed.codebook_of, model.embed.cards)):
        w, w0 = table.weight, before[f"embed.tables.{i}.weight"]
        if c >= 0:  # code rows start again at zero; the specials (START) are kept
            assert w[:card].abs().sum() == 0 and torch.equal(w[card:], w0[card:])
        else:
            assert torch.equal(w, w0)
    for s, spec in enumerate(gen):
        changed = not torch.equal(after[f"depth.heads.{s}.weight"], before[f"depth.heads.{s}.weight"])
        assert changed == (spec.kind == "audio")
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert all(k.startswith(("embed.tables.", "embed.codebooks", "depth.heads.", "depth.prev_emb.")) for k in changed)
    assert "embed.feature_proj.weight" not in changed and "depth.prev_emb.0.weight" not in changed  # text's
    # without codec features the code rows start again at random
    plain = tiny_lm(Streams.asr(20, 16, 3, text_delay=3))
    rows = plain.embed.tables[1].weight[:16].clone()
    plain.retarget_codec()
    assert not torch.equal(rows, plain.embed.tables[1].weight[:16])


def test_kernel_route_gives_the_same_logits():
    # the route CUDA takes (tokenlm.kernels: decode attention, sampling), here through the references
    model = tiny_lm(DUPLEX)
    delayed, _ = random_tokens(DUPLEX, 2, 12)
    plain, kern = LMStreamer(model, 2), LMStreamer(model, 2, use_kernels=True)
    plain.start()
    kern.start()
    for t in range(delayed.shape[2]):
        _, a = plain.step(delayed[:, :, t], return_logits=True)
        _, b = kern.step(delayed[:, :, t], return_logits=True)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=2e-5, rtol=1e-4)
    sampler = LMStreamer(model, 2, use_kernels=True, sampling=Sampling(temperature=1.0, top_k=3),
                         generator=torch.Generator().manual_seed(0))
    sampler.start()
    out = sampler.step()
    assert all(((out[:, k] >= 0) & (out[:, k] < DUPLEX[k].output_vocab)).all() for k in DUPLEX.generated)


def test_sessions_are_independent_and_can_restart():
    streams = Streams.asr(20, 16, 2, text_delay=2)
    model = tiny_lm(streams)
    delayed, _ = random_tokens(streams, 3, 12, seed=1)
    ref = model(delayed[:1])[0][0]  # session 0 alone, from frame 0
    st = LMStreamer(model, batch_size=3)
    st.start([1, 2])
    for t in range(5):  # the other sessions run for a while first
        st.step(delayed[:, :, t])
    st.start(0)  # session 0 joins late, in slot 0
    st.stop(2)  # session 2 leaves
    assert st.free_slots == [2]
    for t in range(12):
        frame = delayed[:, :, t].clone()
        frame[0] = delayed[0, :, t]
        _, logits = st.step(frame, return_logits=True)
        torch.testing.assert_close(logits[0][0], ref[t], atol=2e-5, rtol=1e-4)
    st.reset(0)  # a reset session starts again from scratch
    _, logits = st.step(delayed[:, :, 0], return_logits=True)
    torch.testing.assert_close(logits[0][0], ref[0], atol=2e-5, rtol=1e-4)


def test_reorder_and_commit_let_rows_take_over_other_histories():
    # what a beam search does: after a few frames row 0 continues row 1's history and row 1 row 0's;
    # the logits then follow the full forward pass of the swapped token histories (past the ring's wrap)
    streams = Streams.asr(20, 16, 2, text_delay=2)
    model = tiny_lm(streams)
    delayed, _ = random_tokens(streams, 2, 14, seed=3)
    swapped = delayed.flip(0)
    st = LMStreamer(model, batch_size=2)
    st.start()
    for t in range(5):
        st.step(delayed[:, :, t])
    with pytest.raises(ValueError, match="row indices"):
        st.reorder([0])
    st.reorder([1, 0])
    ref = model(swapped)[0]
    for t in range(5, 14):
        h = st.temporal_step()  # the caller computes the frame's logits and chooses the tokens itself
        logits = model.depth.incremental(0, h, None, st._depth_cache)
        torch.testing.assert_close(logits, ref[:, t], atol=2e-5, rtol=1e-4)
        st.commit(swapped[:, :, t])


def test_generation_samples_only_what_is_asked():
    model = tiny_lm(DUPLEX)
    st = LMStreamer(model, batch_size=2, sampling=Sampling(temperature=1.0, top_k=5),
                    generator=torch.Generator().manual_seed(0))
    st.start()
    provided = torch.full((2, len(DUPLEX)), UNGENERATED)
    provided[:, 4:] = torch.tensor([[1, 2, 3], [ZERO, ZERO, ZERO]])  # the user's audio (input only)
    provided[1, 0] = DUPLEX[0].pad_id  # force the text of session 1
    for _ in range(4):
        out = st.step(provided)
        assert torch.equal(out[:, 4:], provided[:, 4:]) and out[1, 0] == DUPLEX[0].pad_id
        for k in DUPLEX.generated:
            assert ((out[:, k] >= 0) & (out[:, k] < DUPLEX[k].output_vocab)).all()
    provided[0, 5] = UNGENERATED
    with pytest.raises(ValueError, match="input-only"):
        st.step(provided)


def test_sampling_rules():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 5.0, 4.9, -3.0, 1.0]]).repeat(500, 1)
    assert (sample(logits) == 1).all()
    k2 = sample(logits, Sampling(temperature=1.0, top_k=2), g)
    assert set(k2.tolist()) == {1, 2}
    p = sample(logits, Sampling(temperature=1.0, top_p=0.3), g)  # the top token alone holds > 30%
    assert set(p.tolist()) == {1}
    hot = sample(logits, Sampling(temperature=100.0), g)
    assert len(set(hot.tolist())) == 5


def test_loss_masks_invalid_positions_and_learns():
    streams = Streams.tts(20, 16, 2, audio_delay=2)
    model = tiny_lm(streams).train()
    delayed, valid = random_tokens(streams, 4, 10)
    delayed[:, 0, ::3] = torch.where(valid[:, 0, ::3], streams[0].pad_id, delayed[:, 0, ::3])  # some PADs
    loss, stats = model.loss(delayed, valid)
    assert loss.requires_grad and set(stats) == {f"{m}/{n}" for m in ("loss", "acc") for n in
                                                 ("text", "audio_0", "audio_1")} | {"wacc/text"}
    # wacc/text: accuracy over the valid real text tokens only (PAD / EPAD left out)
    logits = model(delayed)
    words = valid[:, 0] & (delayed[:, 0] < streams[0].card)
    assert words.any() and (valid[:, 0] & ~words).any()
    torch.testing.assert_close(stats["wacc/text"], (logits[0].argmax(-1) == delayed[:, 0])[words].float().mean())
    # the loss is the weighted mean over streams of the cross-entropy at valid positions only
    logits = model(delayed)
    expect = 0.0
    for s, k in enumerate(streams.generated):
        m = valid[:, k]
        ce = torch.nn.functional.cross_entropy(logits[s][m], delayed[:, k][m])
        torch.testing.assert_close(stats[f"loss/{streams[k].name}"], ce)
        expect += streams[k].weight * ce
    torch.testing.assert_close(loss, expect / sum(s.weight for s in streams))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = loss.item()
    for _ in range(60):
        opt.zero_grad()
        loss, _ = model.loss(delayed, valid)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first  # it can memorise a tiny batch


def test_config_checks():
    streams = Streams.asr(20, 16, 2, text_delay=2).to_list()
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        LMConfig(streams=streams, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="unknown"):
        LMConfig.from_dict({"streams": streams, "bogus": 1})
    cfg = LMConfig(streams=streams)
    assert LMConfig.from_dict(cfg.to_dict()) == cfg


def test_compiled_step_gives_the_same_logits():
    """``LMStreamer(compile=True)`` runs the temporal step through torch.compile (for GPUs); on the
    CPU it must give the eager logits to float rounding, across cache wrap-around and restarts."""
    streams = Streams.asr(20, 16, 3, text_delay=3)
    model = tiny_lm(streams)
    delayed, _ = random_tokens(streams, 2, 12)
    eager, compiled = LMStreamer(model, 2), LMStreamer(model, 2, compile=True)
    for st in (eager, compiled):
        st.start()
    for t in range(delayed.shape[2]):
        if t == 6:  # one session restarts: the same for both
            eager.start(1)
            compiled.start(1)
        _, a = eager.step(delayed[:, :, t], return_logits=True)
        _, b = compiled.step(delayed[:, :, t], return_logits=True)
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, atol=2e-5, rtol=1e-4)
