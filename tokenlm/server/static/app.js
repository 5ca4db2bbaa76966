// The tokenlm live page: microphone -> server -> words and model audio. Plain JS, no build step.
// Protocol: docs/server.md. Binary messages, first byte the kind.
"use strict";

const KIND = { HANDSHAKE: 0, AUDIO: 1, TEXT: 2, CONTROL: 3, ERROR: 4 };
const MODE_HELP = {
  asr: "Speak: your words appear as they are recognized.",
  duplex: "Ask it: \u201cwhat is three plus four\u201d, \u201cwhat color is the sky\u201d, \u201cwhat is the " +
    "opposite of hot\u201d, \u201chow are you\u201d. It listens while it answers: talk over it and it stops.",
  tts: "Type text and press Speak: the model's voice plays as it is generated.",
};

const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  modes: $("modes"),
  start: $("start"),
  status: $("status"),
  help: $("help"),
  error: $("error"),
  transcript: $("transcript"),
  transcriptTitle: $("transcript-title"),
  ttsBox: $("tts"),
  ttsText: $("tts-text"),
  speak: $("speak"),
  latency: $("latency"),
  sent: $("sent"),
  received: $("received"),
  level: $("level"),
};

const state = {
  info: null,
  mode: null,
  ws: null,
  ctx: null,
  stream: null,
  node: null,
  source: null,
  seq: 0,
  sentAt: new Map(), // audio message seq -> performance.now()
  latencies: [], // ms, the last 100
  playAt: 0,
  counters: { framesSent: 0, acks: 0, audioFrames: 0, words: 0, errors: 0 },
  running: false,
};

// ---- small helpers -------------------------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();

function packJSON(kind, obj) {
  const body = enc.encode(JSON.stringify(obj));
  const out = new Uint8Array(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out.buffer;
}

function packAudio(seq, int16) {
  const out = new ArrayBuffer(5 + int16.length * 2);
  const view = new DataView(out);
  view.setUint8(0, KIND.AUDIO);
  view.setUint32(1, seq >>> 0, true);
  for (let i = 0; i < int16.length; i++) view.setInt16(5 + 2 * i, int16[i], true);
  return out;
}

function setState(name, text) {
  updateCounters(); // the data-* counters are current whenever the state changes
  ui.body.dataset.state = name;
  ui.status.textContent = text || name;
}

function showError(message, fatal) {
  state.counters.errors++;
  ui.error.hidden = false;
  ui.error.textContent = (fatal ? "Error: " : "Warning: ") + message;
  updateCounters();
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function updateCounters() {
  const c = state.counters;
  const med = median(state.latencies);
  ui.sent.textContent = String(c.framesSent);
  ui.received.textContent = String(c.audioFrames);
  ui.latency.textContent = med === null ? "–" : `${Math.round(med)} ms`;
  const d = ui.body.dataset;
  d.framesSent = c.framesSent;
  d.acks = c.acks;
  d.audioFrames = c.audioFrames;
  d.words = c.words;
  d.errors = c.errors;
  d.latencyMs = med === null ? "" : Math.round(med);
}

// ---- page setup ----------------------------------------------------------------------------------

async function loadInfo() {
  try {
    const r = await fetch("/api/info", { cache: "no-store" });
    state.info = await r.json();
  } catch (e) {
    showError(`cannot reach the server: ${e}`, true);
    return;
  }
  ui.modes.innerHTML = "";
  let first = null;
  for (const mode of ["asr", "duplex", "tts"]) {
    const m = state.info.modes[mode] || { available: false, reason: "unknown mode" };
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "mode";
    input.value = mode;
    input.id = `mode-${mode}`;
    input.disabled = !m.available;
    if (m.available && first === null) first = input;
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + mode.toUpperCase()));
    label.title = m.available ? `${m.live}/${m.max_sessions} sessions in use` : `not available: ${m.reason}`;
    if (!m.available) label.classList.add("off");
    ui.modes.appendChild(label);
    input.addEventListener("change", () => selectMode(mode));
  }
  if (first) {
    first.checked = true;
    selectMode(first.value);
    ui.start.disabled = false;
  } else {
    showError("this server has no mode available", true);
  }
  setState("idle", "ready");
}

function selectMode(mode) {
  state.mode = mode;
  ui.body.dataset.mode = mode;
  ui.help.textContent = MODE_HELP[mode];
  ui.ttsBox.hidden = mode !== "tts";
  ui.transcriptTitle.textContent = mode === "asr" ? "Transcript" : mode === "tts" ? "Spoken" : "Model";
}

// ---- session -------------------------------------------------------------------------------------

async function start() {
  ui.error.hidden = true;
  ui.transcript.textContent = "";
  state.counters = { framesSent: 0, acks: 0, audioFrames: 0, words: 0, errors: 0 };
  state.latencies = [];
  state.sentAt.clear();
  state.seq = 0;
  updateCounters();
  setState("connecting", "connecting…");
  ui.start.textContent = "Stop";
  for (const el of ui.modes.querySelectorAll("input")) el.disabled = true;

  try {
    state.ctx = new AudioContext({ latencyHint: "interactive" });
    await state.ctx.resume();
  } catch (e) {
    fail(`cannot start audio: ${e}`);
    return;
  }
  state.playAt = 0;
  if (state.mode !== "tts") {
    try {
      await state.ctx.audioWorklet.addModule("/static/worklet.js"); // ready before the microphone opens
    } catch (e) {
      fail(`cannot load the audio worklet: ${e}`);
      return;
    }
  }
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => ws.send(packJSON(KIND.HANDSHAKE, { protocol: "tokenlm", version: 1, mode: state.mode }));
  ws.onmessage = (e) => onMessage(e.data);
  ws.onerror = () => showError("connection error", true);
  ws.onclose = () => finish();
}

async function startMicrophone(info) {
  const echo = state.mode === "duplex"; // the model talks back: cancel its voice from the microphone
  state.stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: echo, noiseSuppression: false, autoGainControl: false },
  });
  state.source = state.ctx.createMediaStreamSource(state.stream);
  state.node = new AudioWorkletNode(state.ctx, "tokenlm-capture", {
    processorOptions: { targetRate: info.sample_rate, frameSamples: info.hop_length },
  });
  state.node.port.onmessage = (e) => sendFrame(e.data);
  state.source.connect(state.node);
  state.node.connect(state.ctx.destination); // silent output; keeps the node pulled
}

function sendFrame(int16) {
  if (!state.running || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  const seq = state.seq;
  state.seq = (state.seq + 1) >>> 0;
  state.sentAt.set(seq, performance.now());
  state.ws.send(packAudio(seq, int16));
  state.counters.framesSent++;
  let peak = 0;
  for (let i = 0; i < int16.length; i += 8) peak = Math.max(peak, Math.abs(int16[i]));
  ui.level.style.width = `${Math.min(100, (peak / 32768) * 140)}%`;
  if (state.counters.framesSent % 5 === 0) updateCounters();
}

async function onMessage(data) {
  const bytes = new Uint8Array(data);
  if (!bytes.length) return;
  const kind = bytes[0];
  if (kind === KIND.AUDIO) {
    playFrame(new DataView(data));
    return;
  }
  let msg;
  try {
    msg = JSON.parse(dec.decode(bytes.subarray(1)));
  } catch (e) {
    showError(`bad message from the server: ${e}`, false);
    return;
  }
  if (kind === KIND.HANDSHAKE) {
    state.running = true;
    setState("running", state.mode === "tts" ? "connected: type and speak" : "listening…");
    if (state.mode === "tts") {
      ui.speak.disabled = false;
    } else {
      try {
        await startMicrophone(msg);
      } catch (e) {
        fail(`cannot use the microphone: ${e}`);
      }
    }
  } else if (kind === KIND.TEXT) {
    for (const w of msg.words || []) addWord(w);
  } else if (kind === KIND.CONTROL) {
    onControl(msg);
  } else if (kind === KIND.ERROR) {
    showError(msg.error, msg.fatal);
    if (msg.fatal) setState("error", "stopped");
  }
}

function onControl(msg) {
  if (msg.event === "frame") {
    state.counters.acks++;
    const t = state.sentAt.get(msg.seq);
    if (t !== undefined) {
      state.latencies.push(performance.now() - t);
      if (state.latencies.length > 100) state.latencies.shift();
      for (const k of state.sentAt.keys()) {
        if (k <= msg.seq) state.sentAt.delete(k);
        else break;
      }
    }
    if (state.counters.acks % 5 === 0) updateCounters();
  } else if (msg.event === "spoken") {
    setState("running", "spoken: type more");
    ui.speak.disabled = false;
  } else if (msg.event === "done") {
    setState("done", "done");
  }
}

function addWord(w) {
  state.counters.words++;
  const span = document.createElement("span");
  span.className = "word";
  span.textContent = w.word;
  span.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s`;
  ui.transcript.appendChild(span);
  ui.transcript.appendChild(document.createTextNode(" "));
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  updateCounters();
}

function playFrame(view) {
  const n = (view.byteLength - 5) / 2;
  state.counters.audioFrames++;
  if (!state.ctx || n <= 0) return;
  const rate = (state.info && state.info.modes[state.mode].sample_rate) || 16000;
  const buffer = state.ctx.createBuffer(1, n, rate);
  const ch = buffer.getChannelData(0);
  for (let i = 0; i < n; i++) ch[i] = view.getInt16(5 + 2 * i, true) / 32768;
  const src = state.ctx.createBufferSource();
  src.buffer = buffer;
  src.connect(state.ctx.destination);
  const now = state.ctx.currentTime;
  if (state.playAt < now + 0.02) state.playAt = now + 0.08; // start (or restart after a gap) with a little jitter room
  src.start(state.playAt);
  state.playAt += n / rate;
  if (state.counters.audioFrames % 5 === 0) updateCounters();
}

function speak() {
  const text = ui.ttsText.value.trim();
  if (!text || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  state.ws.send(packJSON(KIND.TEXT, { text }));
  ui.speak.disabled = true;
  setState("running", "speaking…");
}

function stopCapture() {
  if (state.node) {
    state.node.port.postMessage("stop");
    state.node.disconnect();
    state.node = null;
  }
  if (state.source) {
    state.source.disconnect();
    state.source = null;
  }
  if (state.stream) {
    for (const t of state.stream.getTracks()) t.stop();
    state.stream = null;
  }
}

function stop() {
  state.running = false; // frames still on their way from the worklet are not sent after "end"
  stopCapture();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    setState("ending", "finishing…");
    state.ws.send(packJSON(KIND.CONTROL, { action: "end" })); // the server flushes, says "done" and closes
    setTimeout(() => state.ws && state.ws.close(), 5000);
  } else {
    finish();
  }
}

function fail(message) {
  showError(message, true);
  setState("error", "stopped");
  if (state.ws) state.ws.close();
  else finish();
}

function finish() {
  stopCapture();
  state.running = false;
  state.ws = null;
  const ctx = state.ctx;
  state.ctx = null;
  if (ctx) setTimeout(() => ctx.close(), Math.max(0, (state.playAt - ctx.currentTime) * 1000) + 200);
  if (ui.body.dataset.state !== "error") setState("done", "stopped");
  ui.start.textContent = "Start";
  ui.speak.disabled = true;
  updateCounters();
  for (const el of ui.modes.querySelectorAll("input")) {
    const m = state.info && state.info.modes[el.value];
    el.disabled = !(m && m.available);
  }
}

ui.start.addEventListener("click", () => (state.ws ? stop() : start()));
ui.speak.addEventListener("click", speak);
ui.ttsText.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) speak();
});
window.tokenlmPage = state; // for debugging and the browser test
updateCounters();
loadInfo();
