# Two commands set up a fresh machine: `make demo` and `make test`.
# Both create .venv/ and install tokenlm (editable, with test extras) when missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench lint clean speech-deps browser-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

.venv: $(STAMP)
venv: $(STAMP)

test: $(STAMP) speech-deps browser-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q

demo: $(STAMP) browser-deps
	$(PY) examples/codec_roundtrip.py
	$(PY) examples/asr_tts.py
	$(PY) examples/duplex_demo.py

bench: $(STAMP)
	$(PY) benchmarks/codec_speed.py
	$(PY) benchmarks/lm_speed.py

lint: $(STAMP)
	$(PY) -m ruff check .

# Debian packages the speech corpus needs (tokenlm.data: TTS libraries and text) and the classic
# codecs the evaluation compares with (codec2, opus-tools). Installed when missing.
SPEECH_PKGS := espeak-ng libespeak-ng1 espeak-ng-data flite libflite1 wordnet-base fortunes codec2 opus-tools \
	festival festvox-kdlpc16k
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

speech-deps:
	@if command -v espeak-ng >/dev/null && command -v flite >/dev/null && command -v c2enc >/dev/null \
		&& command -v opusenc >/dev/null && command -v festival >/dev/null \
		&& test -d /usr/share/festival/voices/english/ked_diphone \
		&& test -e /usr/share/wordnet/data.noun && test -d /usr/share/games/fortunes; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SPEECH_PKGS); \
	else echo "speech-deps: no apt-get here; install $(SPEECH_PKGS) yourself (speech tests will be skipped)"; fi

# Debian's Chromium for the browser test (tests/server/test_browser.py) and the demo page; Playwright
# drives it (executable_path) and never downloads a browser. Installed when missing.
browser-deps:
	@if test -x /usr/bin/chromium; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else echo "browser-deps: no apt-get here; install chromium yourself (the browser test will be skipped)"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
