// The WebSocket, kept open: reconnects with a growing, jittered delay (never in a loop),
// resumes the scan outcomes it missed with resume_after, and hands each outcome on once.
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

export class Live {
  constructor(handlers) {
    this.handlers = handlers; // {state, volumes, progress, outcome}
    this.lastEventId = null;
    this.seenOutcomes = new Set();
    this.delay = FIRST_DELAY_MS;
    this.socket = null;
    this.timer = null;
  }

  start() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const resume = this.lastEventId === null ? "" : `?resume_after=${this.lastEventId}`;
    this.handlers.state(this.socket === null ? "connecting" : "reconnecting");
    const socket = new WebSocket(`${scheme}://${window.location.host}/api/v1/ws${resume}`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.delay = FIRST_DELAY_MS;
      this.handlers.state("live");
    });
    socket.addEventListener("message", (event) => this.receive(JSON.parse(event.data)));
    socket.addEventListener("close", () => this.retry(socket));
  }

  retry(socket) {
    if (socket !== this.socket || this.timer !== null) return;
    const wait = Math.round(this.delay * (0.75 + Math.random() / 2));
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    this.handlers.state("reconnecting", wait);
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.start();
    }, wait);
  }

  receive(message) {
    if (message.type === "volume_update") {
      // The newest outcome so far: a reconnect resumes after it even if none was seen.
      if (typeof message.last_event_id === "number") {
        this.lastEventId = Math.max(this.lastEventId ?? 0, message.last_event_id);
      }
      this.handlers.volumes(message.data);
    } else if (message.type === "scan_progress") {
      this.handlers.progress(message.volume_id, message.data);
    } else if (message.type === "scan_complete" || message.type === "scan_error") {
      const data = message.data || {};
      if (typeof data.event_id === "number") {
        this.lastEventId = Math.max(this.lastEventId ?? 0, data.event_id);
      }
      if (this.seenOutcomes.has(data.scan_id)) return; // a replay of one already shown
      this.seenOutcomes.add(data.scan_id);
      this.handlers.outcome(message.type, message.volume_id, data);
    }
  }
}
