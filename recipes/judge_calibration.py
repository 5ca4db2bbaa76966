"""How well pocketsphinx hears the duplex model's answers before and after the codec: the answers of
the question grammar spoken by the model's voice (flite kal16) as they are, and after the codec
with all its codebooks and with the 4 the duplex model uses. Separates the codec's share of the
duplex speech WER from the model's.

    python recipes/judge_calibration.py [--codec default]
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default="default")
    args = p.parse_args(argv)
    import torch

    import tokenlm.codecs as tc
    from tokenlm.lm.duplex import MODEL_VOICE, _speak, qa_pairs
    from tokenlm.lm.evaluation import Pocketsphinx, wer

    ps, codec = Pocketsphinx(), tc.load(args.codec).eval()
    answers = sorted({a for _, a in qa_pairs()})
    heard: dict[str, list[str]] = {"as spoken": [], f"codec, {codec.num_codebooks} codebooks": [],
                                   "codec, 4 codebooks": []}
    for a in answers:
        wav, _ = _speak(a, MODEL_VOICE[0], MODEL_VOICE[1], 1.0, 1.0, 0)
        wav = torch.nn.functional.pad(wav, (4000, 4000))
        codes = codec.encode(wav[None, None])
        for key, x in zip(heard, [wav, codec.decode(codes)[0, 0], codec.decode(codes[:, :4])[0, 0]]):
            heard[key].append(Pocketsphinx.transcribe(ps, x))
    print(f"pocketsphinx WER on the {len(answers)} answers in {'/'.join(MODEL_VOICE)}:")
    for key, hyps in heard.items():
        print(f"  {key:<24} {100 * wer(answers, hyps):6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
