"""Export a trained codec for shipping: inference-only weights in float16 (about half the size).

    python recipes/export_codec.py runs/codec/model codecs/pretrained/default [--float32]

The result loads with tokenlm.codecs.load(PATH) like any checkpoint (weights back in
float32), but holds no codebook EMA statistics, so training cannot resume from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="codec checkpoint folder or name")
    p.add_argument("dest", type=Path, help="folder to write")
    p.add_argument("--float32", action="store_true", help="keep float32 weights")
    args = p.parse_args(argv)
    import tokenlm.codecs as tc
    from tokenlm.errors import TokenLMError

    try:
        codec = tc.load(args.source)
        out = tc.save_codec(codec, args.dest, inference_only=True, dtype=None if args.float32 else torch.float16)
    except TokenLMError as e:
        print(f"export_codec: error: {e}", file=sys.stderr)
        return 1
    size = (out / "model.safetensors").stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB, fingerprint {tc.load(out).fingerprint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
