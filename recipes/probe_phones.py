"""How much phonetic information a codec's tokens carry: a linear phone probe.

    python recipes/probe_phones.py --manifest data/corpus_phones/train.jsonl [--codec default] [--codec runs/x/model]

The manifest needs phone timings (``build_corpus.py --phones``). Each codec frame gets the phone
under its centre as its label (flite and espeak-ng phone sets kept apart: ``flite:ax``,
``espeak-ng:@``); a linear classifier (multinomial logistic regression over the frame and its
two neighbours on each side) is trained on 80% of the utterances and scored on the other 20% (frame
accuracy, pauses excluded). For each codec it probes the sum of the chosen codewords (what the
decoder and the LMs' codec features see) with ``--codebooks`` codebooks, and the encoder's latent
before quantization; the log-mel spectrogram of the original audio at the same frame rate is the
reference a good codec's tokens should come near (40 bands every 10 ms, the four hops of a frame
side by side), and the same for each codec's decoded audio. Seeds are fixed: the same command
gives the same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from tokenlm.data.phones import frame_labels


def with_context(x: torch.Tensor, width: int = 2) -> torch.Tensor:
    """``[F, D]`` -> ``[F, (2 width + 1) D]``: each frame with its neighbours (edges repeated)."""
    pad = torch.cat([x[:1].expand(width, -1), x, x[-1:].expand(width, -1)])
    return torch.cat([pad[i: i + x.shape[0]] for i in range(2 * width + 1)], dim=1)


def train_probe(xs: list[torch.Tensor], ys: list[torch.Tensor], test: list[int], classes: int,
                epochs: int = 30, seed: int = 0) -> float:
    """Frame accuracy on the ``test`` utterances of a linear classifier trained on the others."""
    g = torch.Generator().manual_seed(seed)
    train = [i for i in range(len(xs)) if i not in set(test)]
    x_tr, y_tr = torch.cat([xs[i] for i in train]), torch.cat([ys[i] for i in train])
    x_te, y_te = torch.cat([xs[i] for i in test]), torch.cat([ys[i] for i in test])
    keep_tr, keep_te = y_tr >= 0, y_te >= 0
    x_tr, y_tr, x_te, y_te = x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te]
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-5
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x_tr.shape[1], classes)
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3, weight_decay=1e-4)
    n = x_tr.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(1024):
            loss = torch.nn.functional.cross_entropy(probe(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((probe(x_te).argmax(-1) == y_te).float().mean())


def log_mel(wav: torch.Tensor, sample_rate: int, frame_rate: float, num_frames: int, sub: int = 4) -> torch.Tensor:
    """``[num_frames, sub * 40]``: 40 log-mel bands every ``1 / (sub * frame_rate)`` s, the ``sub``
    hops of each codec frame side by side (so the probe sees what happens inside a frame)."""
    import torchaudio

    hop = round(sample_rate / frame_rate / sub)
    m = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=4 * hop, hop_length=hop, n_mels=40,
                                             center=True)(wav)[0]  # [40, F']
    m = torch.log(m + 1e-5).T  # [F', 40]
    need = num_frames * sub
    if m.shape[0] < need:
        m = torch.cat([m, m[-1:].expand(need - m.shape[0], -1)])
    return m[:need].reshape(num_frames, sub * m.shape[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, type=Path, help="a manifest with phone timings (build_corpus --phones)")
    p.add_argument("--codec", action="append", help="codec name or checkpoint folder (repeatable; default: default)")
    p.add_argument("--codebooks", type=int, help="codebooks to sum (default: all)")
    p.add_argument("--limit", type=int, default=400, help="utterances to use (default 400)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    import tokenlm.codecs as tc
    from tokenlm.audio import load_audio
    from tokenlm.data.manifest import read_manifest
    from tokenlm.errors import TokenLMError

    try:
        entries = [e for e in read_manifest(args.manifest) if e.get("phones")][: args.limit]
        if len(entries) < 10:
            raise TokenLMError(f"{args.manifest}: fewer than 10 utterances with phone timings "
                               "(build the corpus with --phones)")
        codecs = []
        for name in args.codec or ["default"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                codecs.append((name, tc.load(name).eval()))
    except TokenLMError as e:
        print(f"probe_phones: error: {e}", file=sys.stderr)
        return 1
    frame_rate = codecs[0][1].frame_rate
    if any(c.frame_rate != frame_rate for _, c in codecs):
        print("probe_phones: error: the codecs have different frame rates", file=sys.stderr)
        return 1
    feats: dict[str, list[torch.Tensor]] = {"log-mel of the original": []}
    sub = 4
    labels: list[list[str | None]] = []
    for e in tqdm(entries, desc="features", unit="utt"):
        c0 = codecs[0][1]
        wav, _ = load_audio(e["audio"], c0.sample_rate, c0.channels)
        frames = None
        for name, codec in codecs:
            with torch.no_grad():
                padded = torch.nn.functional.pad(wav[None], (0, codec.num_frames(wav.shape[-1]) * codec.hop_length
                                                            - wav.shape[-1]))
                latent = codec.encoder(padded) if hasattr(codec, "encoder") else None  # [1, D, F]
                codes = codec.encode(wav[None], args.codebooks)[0]  # [Q, F]
                books = codec.codebook_vectors()[: codes.shape[0]]  # [Q, K, D]
                summed = sum(books[q][codes[q]] for q in range(codes.shape[0]))  # [F, D]
                decoded = codec.decode(codes[None])[0][..., : wav.shape[-1]]
            frames = codes.shape[1]
            what = "codebook 0's codeword" if codes.shape[0] == 1 else f"sum of {codes.shape[0]} codewords"
            feats.setdefault(f"{name}: {what}", []).append(with_context(summed))
            feats.setdefault(f"{name}: log-mel of its decoded audio", []).append(
                with_context(log_mel(decoded, codec.sample_rate, frame_rate, frames, sub)))
            if latent is not None:
                feats.setdefault(f"{name}: encoder latent (unquantized)", []).append(
                    with_context(latent[0].T[:frames]))
        feats["log-mel of the original"].append(with_context(log_mel(wav, c0.sample_rate, frame_rate, frames, sub)))
        labels.append(frame_labels(e["phones"], frames, frame_rate, e.get("engine", "")))
    names = sorted({lab for ls in labels for lab in ls if lab})
    index = {n: i for i, n in enumerate(names)}
    ys = [torch.tensor([index[x] if x else -1 for x in ls]) for ls in labels]
    test = list(range(0, len(entries), 5))  # every fifth utterance
    results = {}
    for key, xs in feats.items():
        results[key] = train_probe(xs, ys, test, len(names), args.epochs)
    voiced = sum(int((y >= 0).sum()) for y in ys)
    print(f"Linear phone probe: {len(entries)} utterances ({len(test)} held out), {voiced} labelled frames at "
          f"{frame_rate:g} Hz, {len(names)} phone classes (flite and espeak-ng sets apart)\n")
    print("| features | frame accuracy |\n|---|---:|")
    for key, acc in results.items():
        print(f"| {key} | {100 * acc:.1f}% |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"manifest": str(args.manifest), "utterances": len(entries),
                                         "classes": len(names), "frames": voiced, "accuracy": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
