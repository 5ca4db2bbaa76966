"""The README's Python example runs as written."""

import re
import warnings
from pathlib import Path

import tokenlm.codecs as tc

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.UntrainedCodecWarning)
        for code in blocks:
            code = code.replace("examples/data/sample.wav", str(ROOT / "examples/data/sample.wav"))
            exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "sample.tok").exists() and (tmp_path / "decoded.wav").exists()
