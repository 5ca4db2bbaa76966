"""End to end in a real browser: headless Chromium (driven by Playwright) opens the page, its fake
microphone plays a WAV file, the page streams it through the AudioWorklet to the server and shows
the words; in duplex mode the model's audio comes back and is played.

Needs Debian's chromium (/usr/bin/chromium, or TOKENLM_CHROMIUM) and the playwright package; the
test is skipped, saying which is missing, only when one of them is. Playwright never downloads a
browser here. ``TOKENLM_SCREENSHOT=1`` saves the page after the ASR session to docs/server_page.png
(or to the path it names).
"""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tokenlm.audio import load_audio, resample

from .conftest import REPO, SAMPLE
from .helpers import run, running

QUESTIONS = REPO / "examples" / "data" / "questions.wav"

pytestmark = pytest.mark.timeout(240)

CHROMIUM = os.environ.get("TOKENLM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
]
SILENCE_AFTER = 1.5  # seconds of silence after the speech in the fake microphone's file (it loops)


def _skip_reason() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (make browser-deps, or apt-get install chromium)"
    return None


class Recording:
    """An engine that keeps the audio each slot was given (to transcribe it again afterwards)."""

    def __init__(self, engine):
        self._engine = engine
        self.received: dict[int, list[torch.Tensor]] = {}

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def open(self):
        slot = self._engine.open()
        self.received[slot] = []
        return slot

    def step(self, inputs):
        for slot, x in inputs.items():
            if x is not None:
                self.received[slot].append(x.clone())
        return self._engine.step(inputs)


def _capture_snr(got: np.ndarray, ref: np.ndarray, block: int = 8000) -> tuple[int, float, float]:
    """How faithfully ``got`` (what the server received) holds ``ref`` (the file): where the file
    starts in it (``got[i + offset] ~ ref[i]``: capture may begin a little into the file), the
    median SNR in dB of 0.5 s blocks of ``ref`` found near there (each block aligned on its own, so
    a glitch of a loaded machine's audio thread costs one block, not the rest), and the fraction of
    ``ref`` the capture covers."""
    probe = ref[16000: 32000]
    corr = np.correlate(got[: len(ref) + 3 * 16000], probe, mode="valid")
    offset = int(np.argmax(np.abs(corr))) - 16000
    snrs = []
    for b in range(max(0, -offset), len(ref) - block + 1, block):
        r = ref[b: b + block]
        lo = max(0, b + offset - block // 2)
        window = got[lo: b + offset + block + block // 2]
        if len(window) < block:
            break
        c = np.correlate(window, r, mode="valid")
        g = window[int(np.argmax(np.abs(c))):][:block]
        snrs.append(10 * np.log10((r ** 2).sum() / max(((g - r) ** 2).sum(), 1e-12)))
    covered = (min(len(ref), len(got) - offset) - max(0, -offset)) / len(ref)
    return offset, float(np.median(snrs)) if snrs else float("-inf"), covered


def _overlap(a: list[str], b: list[str]) -> float:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b, autojunk=False).ratio()


@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_browser_page_end_to_end(real_engines, tmp_path):
    from playwright.async_api import async_playwright

    from tokenlm.lm.tasks import Transcriber

    asr, _ = real_engines["asr"]
    duplex, duplex_kind = real_engines["duplex"]
    tts, tts_kind = real_engines["tts"]
    rec = Recording(asr)
    # the fake microphone: the sample at 44.1 kHz (what a sound card gives), then silence
    wav, _ = load_audio(SAMPLE, 16000, 1)
    mic = resample(wav, 16000, 44100)[0].numpy()
    mic = np.concatenate([mic, np.zeros(int(SILENCE_AFTER * 44100), np.float32)])
    mic_file = tmp_path / "mic.wav"
    sf.write(mic_file, mic, 44100, subtype="PCM_16")
    speech_frames = int((wav.shape[-1] / 16000 + SILENCE_AFTER - 0.3) * 25)
    shot = os.environ.get("TOKENLM_SCREENSHOT", "")
    shot_path = None if shot in ("", "0") else (REPO / "docs" / "server_page.png" if shot == "1" else Path(shot))
    log: list[str] = []

    async def main():
        async with running({"asr": rec, "duplex": duplex}, {"tts": "no tts model in this test"}) as srv, \
                running({"tts": tts}) as tts_srv, async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic_file}"],
                permissions=["microphone"], viewport={"width": 820, "height": 480},
            )
            try:
                page = ctx.pages[0] if ctx.pages else await ctx.new_page()
                page.on("console", lambda m: log.append(f"console {m.type}: {m.text}"))
                page.on("pageerror", lambda e: log.append(f"page error: {e}"))
                await page.goto(str(srv.make_url("/")))
                await page.wait_for_selector("body[data-state=idle]", timeout=30_000)
                assert await page.is_disabled("#mode-tts")  # unavailable modes cannot be chosen

                # ASR: the words of the file appear while it plays
                await page.check("#mode-asr")
                await page.click("#start")
                await page.wait_for_function("Number(document.body.dataset.words) > 0", timeout=30_000)
                if shot_path is not None:  # live, near the end of the speech
                    await page.wait_for_function(
                        f"Number(document.body.dataset.framesSent) >= {speech_frames - 45}", timeout=60_000)
                    await page.wait_for_timeout(300)  # let the newest word fade in
                    await page.screenshot(path=str(shot_path.with_name(shot_path.stem + "_asr.png")))
                await page.wait_for_function(f"Number(document.body.dataset.framesSent) >= {speech_frames}",
                                             timeout=60_000)
                await page.click("#start")  # Stop: the server flushes the last words, then closes
                await page.wait_for_selector("body[data-state=done]", timeout=30_000)
                asr_data = await page.evaluate("({...document.body.dataset})")
                asr_words = (await page.inner_text("#transcript")).split()
                error_text = await page.inner_text("#error")

                # duplex: the model's audio comes back, one frame per frame sent
                await page.check("#mode-duplex")
                await page.click("#start")
                await page.wait_for_function("Number(document.body.dataset.audioFrames) >= 50", timeout=60_000)
                await page.click("#start")
                await page.wait_for_selector("body[data-state=done]", timeout=30_000)
                duplex_data = await page.evaluate("({...document.body.dataset})")

                # TTS (on a server that has it): type, Speak, the model's audio plays, Speak again
                page = await ctx.new_page()
                await page.goto(str(tts_srv.make_url("/")))
                await page.wait_for_selector("body[data-state=idle]", timeout=30_000)
                assert await page.is_disabled("#mode-asr") and await page.is_visible("#tts-text")
                await page.check("#mode-tts")
                await page.click("#start")
                await page.wait_for_selector("#speak:not([disabled])", timeout=30_000)
                await page.fill("#tts-text", "hello world")
                await page.click("#speak")
                await page.wait_for_function("Number(document.body.dataset.audioFrames) > 0", timeout=30_000)
                await page.wait_for_selector("#speak:not([disabled])", timeout=60_000)  # "spoken"
                await page.click("#start")
                await page.wait_for_selector("body[data-state=done]", timeout=30_000)
                tts_data = await page.evaluate("({...document.body.dataset})")
            finally:
                await ctx.close()
            if shot_path is not None:  # the README's picture: the duplex model answering questions
                await duplex_screenshot(pw, srv, shot_path)
        return asr_data, asr_words, error_text, duplex_data, tts_data

    async def duplex_screenshot(pw, srv, path):
        q, _ = load_audio(QUESTIONS, 16000, 1)
        q_file = tmp_path / "questions.wav"
        sf.write(q_file, resample(q, 16000, 44100)[0].numpy(), 44100, subtype="PCM_16")
        ctx = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile-duplex"), executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={q_file}"],
            permissions=["microphone"], viewport={"width": 820, "height": 480},
        )
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            await page.goto(str(srv.make_url("/")))
            await page.wait_for_selector("body[data-state=idle]", timeout=30_000)
            await page.check("#mode-duplex")
            await page.click("#start")
            frames = int(q.shape[-1] / 16000 * 25) + 25
            await page.wait_for_function(f"Number(document.body.dataset.framesSent) >= {frames}", timeout=90_000)
            await page.screenshot(path=str(path))
            await page.click("#start")
        finally:
            await ctx.close()

    t0 = time.monotonic()
    asr_data, asr_words, error_text, duplex_data, tts_data = run(main(), timeout=200)
    took = time.monotonic() - t0
    assert not [x for x in log if "error" in x.lower()], log
    assert asr_data["errors"] == "0" and not error_text.strip(), error_text

    # every frame the page sent was acknowledged; the page measured a latency
    assert int(asr_data["acks"]) == int(asr_data["framesSent"]) >= speech_frames
    assert asr_data["latencyMs"] != ""
    # the server got the file: the page's capture and 44.1 -> 16 kHz resampling are faithful
    (slot,) = [s for s, xs in rec.received.items() if xs]
    got = torch.cat(rec.received[slot]).numpy()
    offset, snr, covered = _capture_snr(got, wav[0].numpy())
    assert snr > 20, f"captured audio differs from the file: median {snr:.1f} dB SNR (offset {offset} samples)"
    assert covered > 0.8, f"only {covered:.0%} of the file was captured (offset {offset} samples)"
    # and the page shows what the same model says about that audio through a streaming session (the
    # server's engine streams greedily and starts fresh LM contexts at the same pauses)
    tr = Transcriber(asr.lm, beam=0)
    session = tr.session()
    streamed = [w.word for w in session.push(torch.from_numpy(got)[None]) + session.finish()]
    assert asr_words, "no words on the page"
    assert _overlap(asr_words, streamed) >= 0.9, (asr_words, streamed)
    # (the file itself, offline: the shipped interim ASR model is so weak that a shift of one sample
    # changes its words, so this is only reported)
    of_file = _overlap(asr_words, [w.word for w in tr.transcribe(wav, 16000)])

    assert int(duplex_data["audioFrames"]) >= 50
    assert int(duplex_data["audioFrames"]) == int(duplex_data["acks"]) == int(duplex_data["framesSent"])
    assert duplex_data["errors"] == "0"
    assert int(tts_data["audioFrames"]) > 0 and tts_data["errors"] == "0"
    print(f"browser test: {took:.1f} s; asr: {len(asr_words)} words, median latency {asr_data['latencyMs']} ms, "
          f"capture SNR {snr:.1f} dB (offset {offset}), "
          f"overlap with the file's offline words {of_file:.0%}; duplex ({duplex_kind} model): {duplex_data['audioFrames']} audio frames; "
          f"tts ({tts_kind} model): {tts_data['audioFrames']} audio frames, {tts_data['words']} words")
