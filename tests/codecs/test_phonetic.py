"""The phone judge behind the codec's phonetic loss (tokenlm.codecs.phonetic)."""

import json
import math

import pytest
import torch

from tokenlm.codecs.phonetic import (
    PAUSE,
    PhoneJudge,
    PhoneJudgeConfig,
    load_phone_judge,
    phonetic_loss,
    save_phone_judge,
)
from tokenlm.errors import TokenLMError


def small_judge(seed=0):
    torch.manual_seed(seed)
    return PhoneJudge(PhoneJudgeConfig(classes=[PAUSE, "x:a", "x:b"], channels=16, layers=2))


def test_frames_are_fifty_a_second_with_one_row_per_class():
    judge = small_judge()
    assert judge.config.frame_rate == 50
    logits = judge(torch.randn(2, 1, 16000))  # one second
    assert logits.shape == (2, 51, 3)  # centred frames: one at each end


def test_save_load_round_trip_frozen(tmp_path):
    judge = small_judge()
    with torch.no_grad():
        judge.mean.fill_(-3.0)
    save_phone_judge(judge, tmp_path / "j")
    back = load_phone_judge(tmp_path / "j")
    wav = torch.randn(1, 1, 8000)
    torch.testing.assert_close(back(wav), judge.eval()(wav))
    assert not back.training and not any(p.requires_grad for p in back.parameters())
    assert back.config.classes == [PAUSE, "x:a", "x:b"]


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(TokenLMError, match="cannot load a phone judge"):
        load_phone_judge(tmp_path)  # no config.json
    (tmp_path / "config.json").write_text(json.dumps({"format": "tokenlm-codec"}))
    with pytest.raises(TokenLMError, match="not a phone judge"):
        load_phone_judge(tmp_path)
    save_phone_judge(small_judge(), tmp_path / "cut")
    blob = (tmp_path / "cut" / "model.safetensors").read_bytes()
    (tmp_path / "cut" / "model.safetensors").write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(TokenLMError, match="cannot load a phone judge"):
        load_phone_judge(tmp_path / "cut")


def test_loss_is_zero_for_the_same_audio_and_its_gradient_reaches_the_estimate_only():
    judge = small_judge()
    judge.requires_grad_(False)
    ref = torch.randn(2, 1, 8000) * 0.1
    kl, agree = phonetic_loss(judge, ref.clone(), ref)
    assert kl.item() == pytest.approx(0.0, abs=1e-6) and agree == 1.0
    est = (ref + 0.1 * torch.randn_like(ref)).requires_grad_(True)
    kl, agree = phonetic_loss(judge, est, ref)
    assert kl.item() > 0 and 0 <= agree <= 1 and math.isfinite(kl.item())
    kl.backward()
    assert est.grad is not None and est.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.parameters())


def test_a_judge_needs_classes():
    with pytest.raises(TokenLMError, match="class names"):
        PhoneJudge(PhoneJudgeConfig(classes=[]))
