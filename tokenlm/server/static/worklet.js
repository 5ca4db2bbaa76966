// Microphone capture for the tokenlm page, in the audio thread.
//
// Takes the first input channel at the AudioContext's rate (usually 44.1 or 48 kHz), resamples it to
// the server's rate (16 kHz) with a windowed-sinc low-pass interpolator, and posts Int16Array frames of
// `frameSamples` samples (640 = 40 ms) to the page, which sends them to the server.

class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.identity = Math.abs(this.step - 1) < 1e-9;
    // cut-off a little below the output Nyquist, relative to the input rate
    this.cut = Math.min(1, 1 / this.step) * 0.92;
    this.half = Math.ceil(10 / this.cut); // kernel half-width in input samples
    this.buf = new Float32Array(0);
    this.pos = this.half; // next output position, in input samples from buf[0]
  }

  kernel(t) {
    if (t === 0) return this.cut;
    const a = Math.abs(t);
    if (a >= this.half) return 0;
    const x = Math.PI * this.cut * t;
    const w = 0.5 + 0.5 * Math.cos((Math.PI * a) / this.half); // Hann window
    return (this.cut * Math.sin(x)) / x * w;
  }

  // input: Float32Array at inRate -> array of output samples at outRate
  push(input) {
    if (this.identity) return Array.from(input);
    const joined = new Float32Array(this.buf.length + input.length);
    joined.set(this.buf);
    joined.set(input, this.buf.length);
    const out = [];
    while (this.pos + this.half < joined.length) {
      const c = Math.floor(this.pos);
      let acc = 0;
      for (let k = c - this.half + 1; k <= c + this.half; k++) {
        acc += joined[k] * this.kernel(this.pos - k);
      }
      out.push(acc);
      this.pos += this.step;
    }
    const drop = Math.max(0, Math.floor(this.pos) - this.half);
    this.buf = joined.slice(drop);
    this.pos -= drop;
    return out;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.frameSamples = o.frameSamples || 640;
    this.resampler = new Resampler(sampleRate, o.targetRate || 16000);
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    if (!this.running) return false;
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (const v of this.resampler.push(channel)) {
      const s = Math.max(-1, Math.min(1, v));
      this.frame[this.fill++] = Math.round(s * 32767);
      if (this.fill === this.frameSamples) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Int16Array(this.frameSamples);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor("tokenlm-capture", CaptureProcessor);
