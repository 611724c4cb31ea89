// VolumeViz's own page: the volume table and one volume's detail, kept live over the
// WebSocket. No framework and no build step: these modules are what the browser runs.
import { api } from "./api.js";
import { VolumeDetail } from "./detail.js";
import { bytes, count, el } from "./format.js";
import { Live } from "./live.js";
import { VolumeTable } from "./volumes.js";

const view = document.getElementById("view");
const connection = document.getElementById("connection");
const summary = document.getElementById("summary");
const notices = el("div", { id: "notices", class: "notices", role: "alert" });

const store = {
  volumes: [],
  scans: new Map(), // volume name -> {scanId, progress, files, bytes, throttled, finished, size, error}
  volumeOfScan: new Map(), // scan id -> volume name, for the scans this page follows
  recent: [], // the outcomes this page showed, newest first: {scanId, volume, text, failed}
  outcomes: new Map(), // scan id -> {size, error}: every outcome heard, the newest 500

  track(volumeId, scanId) {
    this.volumeOfScan.set(scanId, volumeId);
    if (this.outcomes.has(scanId)) {
      show(scanId); // it ended before our request's answer arrived
    } else {
      this.scans.set(volumeId, { scanId, progress: 0, files: 0, bytes: 0, throttled: false, finished: false });
    }
    redraw();
  },

  async scan(volumeId) {
    try {
      const answer = await api.scan(volumeId);
      this.track(volumeId, answer.scan_id);
    } catch (error) {
      this.scans.set(volumeId, { finished: true, error: error.message });
      redraw();
    }
  },

  notice(text) {
    notices.replaceChildren(el("p", {}, text));
  },
};

let table = null;
let detail = null;
let frame = null;

function redraw() {
  // Coalesced to one draw a frame, however many messages arrive.
  if (frame !== null) return;
  frame = window.requestAnimationFrame(() => {
    frame = null;
    const total = store.volumes.reduce((sum, v) => sum + (v.size_bytes || 0), 0);
    summary.textContent = `${count(store.volumes.length)} volumes · ${bytes(total)}`;
    if (table && table.root.isConnected) table.render();
    if (detail && detail.root.isConnected) detail.renderScan();
  });
}

function route() {
  const match = window.location.hash.match(/^#\/volume\/([^?]+)(?:\?path=(.*))?$/);
  if (match) {
    const id = decodeURIComponent(match[1]);
    const path = match[2] ? decodeURIComponent(match[2]) : "/";
    detail = new VolumeDetail(store, id, path);
    view.replaceChildren(notices, detail.root);
    detail.load();
  } else {
    detail = null;
    table = table || new VolumeTable(store);
    view.replaceChildren(notices, table.root);
    table.render();
  }
}

function outcome(type, volumeId, data) {
  const size = data.result ? data.result.total_size : null;
  const error = type === "scan_error" ? data.error || data.code : null;
  store.outcomes.set(data.scan_id, { size, error });
  if (store.outcomes.size > 500) store.outcomes.delete(store.outcomes.keys().next().value);
  // A scan this page follows (its button, or progress it showed) is shown as it ends;
  // the rest are in the volume list anyway.
  if (store.volumeOfScan.has(data.scan_id)) show(data.scan_id);
  if (detail && detail.id === volumeId && type === "scan_complete") detail.load();
}

function show(scanId) {
  const name = store.volumeOfScan.get(scanId);
  const { size, error } = store.outcomes.get(scanId);
  store.scans.set(name, { scanId, finished: true, size, error });
  if (!store.recent.some((item) => item.scanId === scanId)) {
    const text = error ? `${name}: ${error}` : `${name}: ${bytes(size)}`;
    store.recent = [{ scanId, volume: name, text, failed: Boolean(error) }, ...store.recent].slice(0, 10);
  }
  redraw();
}

async function catchUp() {
  // Outcomes that ended while the connection was down, for the scans still shown running.
  for (const [name, scan] of store.scans) {
    if (scan.finished || !scan.scanId) continue;
    try {
      const job = await api.scanJob(scan.scanId);
      if (job.status === "completed") live.receive({ type: "scan_complete", volume_id: name, data: { scan_id: scan.scanId, result: job.result } });
      if (job.status === "failed") live.receive({ type: "scan_error", volume_id: name, data: { scan_id: scan.scanId, error: job.error && job.error.message } });
    } catch {
      // the next reconnect tries again
    }
  }
}

let wasLive = false;
const live = new Live({
  state(state, waitMs) {
    connection.dataset.state = state;
    connection.textContent = state === "reconnecting" && waitMs ? `reconnecting in ${Math.ceil(waitMs / 1000)} s` : state;
    if (state === "live" && wasLive) catchUp();
    if (state === "live") wasLive = true;
  },
  volumes(list) {
    store.volumes = list;
    redraw();
  },
  progress(volumeId, data) {
    const known = store.scans.get(volumeId);
    if (!known || known.scanId !== data.scan_id) store.volumeOfScan.set(data.scan_id, volumeId);
    if (store.outcomes.has(data.scan_id)) return; // a late sample of a scan that ended
    store.scans.set(volumeId, {
      scanId: data.scan_id,
      progress: data.progress,
      files: data.files_processed,
      bytes: data.current_size,
      throttled: data.throttled,
      finished: false,
    });
    redraw();
  },
  outcome,
});

window.addEventListener("hashchange", route);
route();
live.start();
