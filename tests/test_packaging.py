"""The wheel maps codecs/ and kernels/ to tokenlm.codecs and tokenlm.kernels; nothing shadows stdlib."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_and_imports_the_mapped_packages(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("tokenlm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tokenlm/codecs/__init__.py" in names
    assert "tokenlm/kernels/__init__.py" in names
    assert "tokenlm/codecs/pretrained/default/model.safetensors" in names, "bundled codec weights missing"
    shipped = [p.relative_to(ROOT / "tokenlm").as_posix() for p in (ROOT / "tokenlm" / "lm" / "pretrained").rglob("*")
               if p.is_file()]
    assert shipped and all(f"tokenlm/{p}" in names for p in shipped), "bundled LM files missing"  # codec/ too
    assert not any(n.startswith(("codecs/", "kernels/")) for n in names), "bare codecs/kernels would shadow stdlib"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import codecs, tokenlm.codecs, tokenlm.kernels;"
        "assert hasattr(codecs, 'encode'), 'stdlib codecs shadowed';"
        "print(tokenlm.codecs.__file__); print(tokenlm.kernels.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True,
    ).stdout.split()
    assert all(p.startswith(str(site)) for p in out), out
