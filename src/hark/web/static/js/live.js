// The Live card: the microphone streamed to WS /api/v1/live as 16-bit PCM; partial
// words shown greyed as they are heard, final phrases solid.

import { credential } from "./api.js";
import { announce, clearError, showError } from "./util.js";

// What failed, for the errors that listening again answers (see showError).
const LISTEN = "live";

const RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

export class Live {
  constructor() {
    this.start = document.getElementById("live-start");
    this.stop = document.getElementById("live-stop");
    this.state = document.getElementById("live-state");
    this.finals = document.getElementById("live-finals");
    this.partial = document.getElementById("live-partial");
    this.session = null;
    this.start.addEventListener("click", () => this.begin());
    this.stop.addEventListener("click", () => this.end());
  }

  async begin() {
    if (this.session) return;
    this.finals.replaceChildren();
    this.partial.textContent = "";
    document.getElementById("live-saved").hidden = true;
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    } catch (error) {
      showError(`No microphone: ${error.message}`, LISTEN);
      return;
    }
    const context = new AudioContext();
    if (!RATES.includes(context.sampleRate)) {
      media.getTracks().forEach((track) => track.stop());
      context.close();
      showError(`The microphone runs at ${context.sampleRate} Hz, which the server does not take.`,
        LISTEN);
      return;
    }
    await context.audioWorklet.addModule("/static/js/pcm-worklet.js");
    const source = context.createMediaStreamSource(media);
    const capture = new AudioWorkletNode(context, "pcm-capture");
    const url = new URL("/api/v1/live", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("sample_rate", String(context.sampleRate));
    const language = document.getElementById("opt-language").value.trim();
    if (language) url.searchParams.set("language", language);
    if (document.getElementById("live-save").checked) url.searchParams.set("save", "true");
    const key = credential();
    if (key) url.searchParams.set("api_key", key);
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.session = { media, context, capture, socket };
    capture.port.onmessage = (message) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(message.data);
    };
    socket.addEventListener("open", async () => {
      source.connect(capture);
      // A node is only run while it feeds the output; the worklet's output is silence.
      capture.connect(context.destination);
      await context.resume();
      this.show("listening", true);
      clearError(LISTEN);
      announce("Listening");
    });
    socket.addEventListener("message", (message) => this.receive(JSON.parse(message.data)));
    socket.addEventListener("close", () => {
      this.release();
      this.show("stopped", false);
    });
  }

  receive(event) {
    if (event.type === "partial") {
      this.partial.textContent = event.segment.text;
    } else if (event.type === "final") {
      const line = document.createElement("p");
      line.className = "live-final";
      line.dataset.start = String(event.segment.start);
      line.textContent = event.segment.text;
      this.finals.append(line);
      this.partial.textContent = "";
    } else if (event.type === "error") {
      showError(event.message, LISTEN);
    } else if (event.type === "closed") {
      announce("Live transcription stopped");
      if (event.job_id) {
        // The whole recording is transcribed again as a job: the reader opens it.
        document.getElementById("live-job").href = `#/jobs/${encodeURIComponent(event.job_id)}`;
        document.getElementById("live-saved").hidden = false;
      }
    }
  }

  end() {
    if (!this.session) return;
    const { socket } = this.session;
    this.session.media.getTracks().forEach((track) => track.stop());
    this.session.capture.port.onmessage = null;
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "stop" }));
    this.show("finishing", false);
  }

  release() {
    if (!this.session) return;
    const { media, context } = this.session;
    media.getTracks().forEach((track) => track.stop());
    context.close();
    this.session = null;
  }

  show(state, running) {
    this.state.textContent = state;
    this.start.disabled = running;
    this.stop.disabled = !running;
  }
}
