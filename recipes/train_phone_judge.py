"""Train a phone judge: the frozen phone classifier behind train_codec.py's --phonetic-weight.

    python recipes/build_corpus.py --out data/corpus_phones5 --hours 5 --seed 12 --phones --workers 2
    python recipes/train_phone_judge.py --train data/corpus_phones5/train.jsonl \\
        --valid data/corpus_phones5/valid.jsonl --out runs/judge

A small convolutional classifier (tokenlm.codecs.phonetic.PhoneJudge) on the log-mel spectrogram
of the *original* audio, labelled from the manifest's phone timings (build_corpus.py --phones;
flite and espeak-ng phone sets kept apart, as probe_phones.py does; pauses and silence are one
class of their own), 50 frames a second. Log-mel features are computed once and held in memory;
training takes random crops. The folder gets the judge (config.json, model.safetensors),
command.txt and log.jsonl (training loss; validation frame accuracy with and without pauses).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, required=True, help="manifest with phone timings")
    p.add_argument("--valid", type=Path, help="manifest with phone timings (accuracy)")
    p.add_argument("--out", type=Path, required=True, help="folder for the judge")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop-seconds", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    return p.parse_args(argv)


def load_features(judge, entries, classes: dict[str, int], desc: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(log-mel ``[n_mels, 2F]``, labels ``[F]``) per utterance; labels: the phone at each output frame's
    centre, the pause class where there is none, IGNORE for phones outside ``classes``."""
    import soundfile as sf
    from tqdm import tqdm

    from tokenlm.audio import resample
    from tokenlm.codecs.phonetic import PAUSE
    from tokenlm.data.phones import IGNORE, frame_labels

    cfg = judge.config
    out = []
    for e in tqdm(entries, desc=desc, dynamic_ncols=True):
        data, sr = sf.read(e["audio"], dtype="float32", always_2d=True)
        wav = torch.from_numpy(data.T.copy()).mean(0, keepdim=True)
        if sr != cfg.sample_rate:
            wav = resample(wav, sr, cfg.sample_rate)
        with torch.no_grad():
            feats = judge.features(wav)[0]
        frames = feats.shape[-1] // 2
        feats = feats[:, : 2 * frames]
        names = frame_labels(e.get("phones") or [], frames, cfg.frame_rate, e.get("engine", ""),
                             offset=-0.5 / cfg.frame_rate)  # frame i is centred at i / frame_rate
        labels = torch.tensor([classes.get(n, IGNORE) if n else classes[PAUSE] for n in names], dtype=torch.long)
        out.append((feats, labels))
    return out


def crop_batch(data, idx: list[int], frames: int, gen: torch.Generator, floor_value: float):
    from tokenlm.data.phones import IGNORE

    n_mels = data[0][0].shape[0]
    x = torch.full((len(idx), n_mels, 2 * frames), floor_value)
    y = torch.full((len(idx), frames), IGNORE, dtype=torch.long)
    for row, i in enumerate(idx):
        feats, labels = data[i]
        n = labels.shape[0]
        start = int(torch.randint(0, n - frames + 1, (), generator=gen)) if n > frames else 0
        m = min(frames, n)
        x[row, :, : 2 * m] = feats[:, 2 * start: 2 * (start + m)]
        y[row, :m] = labels[start: start + m]
    return x, y


@torch.no_grad()
def evaluate(judge, data, pause: int) -> dict:
    from tokenlm.data.phones import IGNORE

    judge.eval()
    right = total = right_p = total_p = 0
    for feats, labels in data:
        pred = judge.classify(feats[None])[0].argmax(-1)[: labels.shape[0]]
        known = labels[: pred.shape[0]] != IGNORE
        phone = known & (labels[: pred.shape[0]] != pause)
        right += int((pred[known] == labels[known]).sum())
        total += int(known.sum())
        right_p += int((pred[phone] == labels[phone]).sum())
        total_p += int(phone.sum())
    judge.train()
    return {"valid_acc": round(right / max(total, 1), 4), "valid_phone_acc": round(right_p / max(total_p, 1), 4)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from tokenlm.codecs.phonetic import PAUSE, PhoneJudge, PhoneJudgeConfig, save_phone_judge
    from tokenlm.data.manifest import read_manifest
    from tokenlm.data.phones import IGNORE, check_inventory, phone_inventory
    from tokenlm.errors import TokenLMError
    from tokenlm.training import warmup_cosine

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_entries = [e for e in read_manifest(args.train) if e.get("phones")]
    inventory = phone_inventory(train_entries)
    check_inventory(inventory)
    classes = [PAUSE] + inventory
    judge = PhoneJudge(PhoneJudgeConfig(classes=classes, channels=args.channels, layers=args.layers))
    index = {n: i for i, n in enumerate(classes)}
    train = load_features(judge, train_entries, index, "features (train)")
    valid = []
    if args.valid:
        valid_entries = [e for e in read_manifest(args.valid) if e.get("phones")]
        if not valid_entries:
            raise TokenLMError(f"{args.valid}: no entries with phone timings")
        valid = load_features(judge, valid_entries, index, "features (valid)")
    allf = torch.cat([f for f, _ in train], dim=1)
    judge.mean.copy_(allf.mean(1))
    judge.std.copy_(allf.std(1).clamp_min(1e-3))
    del allf
    floor_value = math.log(judge.config.floor)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "command.txt", "a") as f:
        f.write(" ".join(["python"] + sys.argv) + "\n")
    opt = torch.optim.AdamW(judge.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(args.warmup, args.steps))
    gen = torch.Generator().manual_seed(args.seed)
    frames = max(1, round(args.crop_seconds * judge.config.frame_rate))
    log = open(args.out / "log.jsonl", "w")
    n_params = sum(p.numel() for p in judge.parameters())
    print(f"train_phone_judge: {len(train)} utterances, {len(classes)} classes, {n_params / 1e6:.2f} M parameters",
          file=sys.stderr)
    bar = tqdm(total=args.steps, desc="train judge", dynamic_ncols=True)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(train), (args.batch_size,), generator=gen).tolist()
        x, y = crop_batch(train, idx, frames, gen, floor_value)
        logits = judge.classify(x)[:, : y.shape[1]]
        loss = F.cross_entropy(logits.flatten(0, 1), y[:, : logits.shape[1]].flatten(), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(judge.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.update(1)
        row = {"step": step, "loss": round(loss.item(), 4), "lr": sched.get_last_lr()[0],
               "sec_per_step": round((time.perf_counter() - t0) / step, 3)}
        if valid and (step % args.eval_every == 0 or step == args.steps):
            row |= evaluate(judge, valid, index[PAUSE])
            bar.write(f"step {step}: loss {loss.item():.3f}, valid accuracy {row['valid_acc']:.3f} "
                      f"(phones only {row['valid_phone_acc']:.3f})")
        if step % 10 == 0 or "valid_acc" in row:
            log.write(json.dumps(row) + "\n")
            log.flush()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    log.close()
    save_phone_judge(judge, args.out)
    print(f"done: the judge is in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"train_phone_judge: error: {e}", file=sys.stderr)
        sys.exit(1)
