import importlib.util
import json
from pathlib import Path

import pytest

from tokenlm.data.manifest import write_manifest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("eval_tts", ROOT / "recipes" / "eval_tts.py")
eval_tts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_tts)


def test_paragraphs_of_joined_sentences_are_spoken_in_pieces(tmp_path):
    texts = ["The cat sat down.", "A dog ran home.", "Birds fly south."]
    write_manifest(tmp_path / "m.jsonl", [{"id": f"u{i}", "text": t, "audio": "none.wav", "split": "test",
                                           "voice": "v", "engine": "flite", "duration": 1.0, "sample_rate": 16000}
                                          for i, t in enumerate(texts)])
    out = tmp_path / "out"
    assert eval_tts.main(["--manifest", str(tmp_path / "m.jsonl"), "--join", "2", "--limit", "1", "--asr", "",
                          "--max-words", "4", "--out-dir", str(out)]) == 0
    res = json.loads((out / "tts_eval.json").read_text())
    assert [r["text"] for r in res["rows"]] == ["The cat sat down. A dog ran home."] and res["max_words"] == 4
    table = (out / "tts_eval.md").read_text()
    assert "texts of more than 4 words spoken in pieces" in table
    assert "on 1 held-out paragraphs of 2 sentences" in table and "| speech | paragraphs |" in table
    for bad in (["--join", "0"], ["--max-words", "-1"]):
        with pytest.raises(SystemExit):
            eval_tts.main(["--manifest", str(tmp_path / "m.jsonl"), *bad])
