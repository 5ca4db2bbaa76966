"""Round-trip speech through the default codec: audio -> token file -> audio.

    python examples/codec_roundtrip.py [IN.wav] [--out-dir out/demo] [--codec default]

Uses only the public API: tokenlm.audio for files, tokenlm.codecs for the codec and
token files. Prints what it did, with the bitrate and a simple quality figure.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import tokenlm.codecs as tc
from tokenlm.audio import load_audio, save_audio
from tokenlm.evaluation import pesq_wb, si_sdr, stoi

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", type=Path, default=HERE / "data" / "sample.wav")
    p.add_argument("--out-dir", type=Path, default=Path("out/demo"))
    p.add_argument("--codec", default="default")
    args = p.parse_args()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tc.UntrainedCodecWarning)
        codec = tc.load(args.codec)
    print(f"codec: {codec.name} ({args.codec}), {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, "
          f"{codec.num_codebooks} codebooks x {codec.codebook_size} = {codec.bitrate() / 1000:.2f} kbps")
    if caught or not getattr(codec, "trained", True):
        print("NOTE: this codec is UNTRAINED (random weights). The round trip below exercises the whole\n"
              "      pipeline, but the decoded audio is noise, not speech. Trained default weights ship\n"
              "      with the codec-training milestone.")

    wav, sr = load_audio(args.input, sample_rate=codec.sample_rate, channels=codec.channels)
    print(f"input: {args.input.name}, {wav.shape[-1] / sr:.2f} s")
    args.out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    codes = codec.encode(wav[None])  # [1, Q, F]
    t1 = time.perf_counter()
    tok_path = tc.save_tokens(args.out_dir / "sample.tok", codes[0], codec, num_samples=wav.shape[-1])
    tokens = tc.load_tokens(tok_path)
    t2 = time.perf_counter()
    decoded = tokens.decode(codec)  # [C, T], trimmed to the input length
    t3 = time.perf_counter()
    out_path = save_audio(args.out_dir / "sample_decoded.wav", decoded, codec.sample_rate)

    info = tokens.info()
    print(f"encoded: {info['num_frames']} frames x {info['num_codebooks']} codebooks in {1000 * (t1 - t0):.0f} ms "
          f"-> {tok_path} ({info['file_bytes']} bytes, {info['bitrate_kbps']:.2f} kbps)")
    print(f"decoded: {decoded.shape[-1] / sr:.2f} s in {1000 * (t3 - t2):.0f} ms -> {out_path}")
    print(f"speed: {wav.shape[-1] / sr / (t1 - t0 + t3 - t2):.0f}x real time (encode + decode)")
    ref, deg = wav.mean(0), decoded.mean(0)  # mono, 16 kHz for the metrics
    if codec.sample_rate != 16000:
        from tokenlm.audio import resample

        ref, deg = resample(ref, codec.sample_rate, 16000), resample(deg, codec.sample_rate, 16000)
    quality = f"STOI {stoi(ref, deg):.3f}, SI-SDR {si_sdr(ref, deg):.1f} dB"
    try:
        quality += f", PESQ-WB {pesq_wb(ref, deg):.2f}"
    except Exception as e:  # PESQ refuses some signals (e.g. silence): say so, keep the rest
        quality += f", PESQ-WB n/a ({type(e).__name__})"
    print(f"quality: {quality}" + ("  (meaningless until the codec is trained)" if not getattr(codec, "trained", True) else ""))


if __name__ == "__main__":
    main()
