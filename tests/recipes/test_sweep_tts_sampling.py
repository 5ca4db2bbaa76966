import importlib.util
import json
from pathlib import Path

import pytest

from tokenlm.data.manifest import write_manifest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("sweep_tts_sampling", ROOT / "recipes" / "sweep_tts_sampling.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def test_settings_parse_or_say_why_not():
    assert sweep.parse_setting("0.5:50:0") == (0.5, 50, 0.0)
    for bad, why in (("0.5:50", "expected TEMPERATURE:TOP_K:TIMING_TEMPERATURE"), ("a:50:0", "expected numbers"),
                     ("0.5:-1:0", "must be >= 0")):
        with pytest.raises(ValueError, match=why):
            sweep.parse_setting(bad)
    with pytest.raises(SystemExit):
        sweep.main(["--manifest", "x.jsonl", "--setting", "0.5:50"])
    with pytest.raises(SystemExit):
        sweep.main(["--manifest", "x.jsonl", "--setting", "0.5:50:0", "--tail-seconds", "-1"])


def test_a_sweep_speaks_every_sentence_under_every_setting_and_seed(tmp_path):
    import torch

    from tokenlm.lm.evaluation import Pocketsphinx, wer
    from tokenlm.lm.tasks import TTS_TAIL_SECONDS, Speaker

    texts = ["the cat sat", "a dog ran home", "the cat sat"]  # a repeated text is spoken once
    write_manifest(tmp_path / "m.jsonl", [{"id": f"u{i}", "text": t, "audio": "none.wav", "split": "valid",
                                            "voice": "v", "engine": "flite", "duration": 1.0, "sample_rate": 16000}
                                           for i, t in enumerate(texts)])
    out = tmp_path / "out"
    assert sweep.main(["--manifest", str(tmp_path / "m.jsonl"), "--setting", "0.7:50:0.7", "--setting", "0.5:20:0",
                       "--seeds", "3", "4", "--batch", "1", "--out-dir", str(out),
                       "--threads", str(torch.get_num_threads())]) == 0
    res = json.loads((out / "tts_sampling.json").read_text())
    assert res["threads"] == torch.get_num_threads()  # recorded, and the caller's count restored
    assert res["manifest"] == str(tmp_path / "m.jsonl")
    assert res["sentences"] == ["the cat sat", "a dog ran home"] and res["seeds"] == [3, 4]
    rows = res["settings"]
    assert [(r["temperature"], r["top_k"], r["timing_temperature"]) for r in rows] == [(0.7, 50, 0.7), (0.5, 20, 0.0)]
    assert all(r["tail_seconds"] == TTS_TAIL_SECONDS for r in rows)  # the library's default
    for r in rows:
        assert [x["seed"] for x in r["runs"]] == [3, 4] and all(len(x["heard"]) == 2 for x in r["runs"])
        assert all(x["wer"] == round(wer(res["sentences"], x["heard"]), 4) for x in r["runs"])
        assert r["wer"] == pytest.approx(sum(x["wer"] for x in r["runs"]) / 2, abs=1e-4)
    # batch j of seed S is sampled from seed S + j * batch: the second sentence, seed 4 -> seed 5
    sp = Speaker("tts")
    wav = sp.speak_batch(["a dog ran home"], temperature=0.5, top_k=20, timing_temperature=0.0, seed=5)[0]
    assert rows[1]["runs"][1]["heard"][1] == Pocketsphinx().transcribe(wav[0])
    md = (out / "tts_sampling.md").read_text()
    assert "| 0.5 | 20 | greedy | 0.12 |" in md and "| 0.7 | 50 | 0.7 | 0.12 |" in md and "seed 4" in md


def test_several_decoders_hear_the_same_sampled_codes(tmp_path):
    import torch

    from tokenlm.errors import CodecError
    from tokenlm.lm.tasks import Speaker

    own = str(ROOT / "tokenlm" / "lm" / "pretrained" / "tts" / "codec")
    write_manifest(tmp_path / "m.jsonl", [{"id": "u0", "text": "a dog ran home", "audio": "none.wav", "split": "valid",
                                            "voice": "v", "engine": "flite", "duration": 1.0, "sample_rate": 16000}])
    args = ["--manifest", str(tmp_path / "m.jsonl"), "--setting", "0.5:50:0", "--seeds", "7",
            "--threads", str(torch.get_num_threads())]
    assert sweep.main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert sweep.main([*args, "--codec", "default", own, "--out-dir", str(tmp_path / "b")]) == 0
    alone = json.loads((tmp_path / "a" / "tts_sampling.json").read_text())["settings"]
    rows = json.loads((tmp_path / "b" / "tts_sampling.json").read_text())["settings"]
    assert [r["codec"] for r in rows] == ["default", own] and "codec" not in alone[0]
    assert rows[1]["runs"][0]["heard"] == alone[0]["runs"][0]["heard"]  # the TTS's own decoder, the same codes
    assert "| default |" in (tmp_path / "b" / "tts_sampling.md").read_text()
    sp = Speaker("tts")
    pieces = sp.sample_batch(["a dog ran home"], seed=7)[0]
    torch.testing.assert_close(sp.decode_pieces(pieces), sp.speak_batch(["a dog ran home"], seed=7)[0])
    import tokenlm.codecs as tc

    with pytest.raises(CodecError, match="does not decode"):
        sp.decode_pieces(pieces, tc.load("speech16k-v1"))
