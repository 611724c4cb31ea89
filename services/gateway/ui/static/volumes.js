// The volume table: every volume, live from the WebSocket; sortable, filterable, paged so
// 5,000 volumes cost no more to draw than one page.
import { api } from "./api.js";
import { bytes, count, el, when } from "./format.js";

const PAGE_SIZE = 100;
const COLUMNS = [
  { key: "name", label: "Name", value: (v) => v.name },
  { key: "driver", label: "Driver", value: (v) => v.driver },
  { key: "size_bytes", label: "Size", value: (v) => v.size_bytes, numeric: true },
  { key: "disk_usage_bytes", label: "Disk usage", value: (v) => v.disk_usage_bytes, numeric: true },
  { key: "file_count", label: "Files", value: (v) => v.file_count, numeric: true },
  { key: "attachments_count", label: "Attached", value: (v) => v.attachments_count, numeric: true },
  { key: "is_orphaned", label: "Orphaned", value: (v) => (v.is_orphaned ? 1 : 0) },
  { key: "last_scan_at", label: "Last scanned", value: (v) => v.last_scan_at || "" },
  { key: "size_source", label: "Source", value: (v) => v.size_source || "" },
];

export class VolumeTable {
  constructor(store) {
    this.store = store; // {volumes, scans, scan(volumeId)}
    this.sort = { key: "size_bytes", descending: true };
    this.filter = "";
    this.orphanedOnly = false;
    this.showSystem = false;
    this.page = 0;
    this.root = this.build();
  }

  build() {
    this.tbody = el("tbody");
    this.pager = el("nav", { class: "pager", "aria-label": "pages" });
    this.reclaimable = el("span", { id: "reclaimable", class: "reclaimable" });
    this.recentEmpty = el("p", { class: "empty" }, "None since this page opened.");
    this.recent = el("ol", { id: "recent-scans", class: "recent", "aria-label": "recent scan outcomes" });
    this.headers = COLUMNS.map((column) =>
      el(
        "th",
        { scope: "col", "aria-sort": "none" },
        el("button", { type: "button", class: "sort", onclick: () => this.sortBy(column.key) }, column.label),
      ),
    );
    const controls = el(
      "div",
      { class: "controls" },
      el("input", {
        id: "filter",
        type: "search",
        placeholder: "Filter by name, driver or label",
        "aria-label": "filter volumes",
        oninput: (event) => {
          this.filter = event.target.value.toLowerCase();
          this.page = 0;
          this.render();
        },
      }),
      el(
        "label",
        {},
        el("input", {
          id: "orphaned-only",
          type: "checkbox",
          onchange: (event) => {
            this.orphanedOnly = event.target.checked;
            this.page = 0;
            this.render();
          },
        }),
        " orphaned only",
      ),
      el(
        "label",
        {},
        el("input", {
          type: "checkbox",
          onchange: (event) => {
            this.showSystem = event.target.checked;
            this.render();
          },
        }),
        " system volumes",
      ),
      el("button", { id: "scan-all", type: "button", onclick: (event) => this.scanAll(event.target) }, "Scan all"),
      this.reclaimable,
    );
    return el(
      "section",
      { class: "volumes" },
      controls,
      el("div", { class: "table-wrap" }, el("table", { id: "volumes" }, el("thead", {}, el("tr", {}, this.headers, el("th", { scope: "col" }, "Scan"))), this.tbody)),
      this.pager,
      el("h2", {}, "Recent scans"),
      this.recentEmpty,
      this.recent,
    );
  }

  sortBy(key) {
    this.sort = this.sort.key === key ? { key, descending: !this.sort.descending } : { key, descending: key !== "name" };
    this.render();
  }

  async scanAll(button) {
    button.disabled = true;
    try {
      const answer = await api.scanAll();
      for (const [volumeId, scanId] of Object.entries(answer.scan_ids)) this.store.track(volumeId, scanId);
    } catch (error) {
      this.store.notice(`Scan all: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  rows() {
    const column = COLUMNS.find((c) => c.key === this.sort.key);
    const matches = this.store.volumes.filter(
      (v) =>
        (this.showSystem || !v.is_system) &&
        (!this.orphanedOnly || v.is_orphaned) &&
        (!this.filter ||
          v.name.toLowerCase().includes(this.filter) ||
          v.driver.toLowerCase().includes(this.filter) ||
          Object.entries(v.labels || {}).some(([k, val]) => `${k}=${val}`.toLowerCase().includes(this.filter))),
    );
    const direction = this.sort.descending ? -1 : 1;
    return matches.sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      if (x === y) return a.name < b.name ? -1 : 1;
      if (x === null || x === undefined) return 1; // unmeasured last, whichever way
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * direction;
    });
  }

  render() {
    const rows = this.rows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    this.page = Math.min(this.page, pages - 1);
    const shown = rows.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE);
    this.tbody.replaceChildren(...shown.map((volume) => this.row(volume)));
    this.headers.forEach((th, i) => {
      const sorted = COLUMNS[i].key === this.sort.key;
      th.setAttribute("aria-sort", sorted ? (this.sort.descending ? "descending" : "ascending") : "none");
    });
    this.pager.replaceChildren(
      el("button", { type: "button", disabled: this.page === 0, onclick: () => this.turn(-1) }, "Previous"),
      el("span", { id: "page" }, `page ${this.page + 1} of ${pages} · ${count(rows.length)} volumes`),
      el("button", { type: "button", disabled: this.page >= pages - 1, onclick: () => this.turn(1) }, "Next"),
    );
    const orphaned = this.store.volumes.filter((v) => v.is_orphaned && !v.is_system);
    const reclaim = orphaned.reduce((sum, v) => sum + (v.size_bytes || 0), 0);
    const unscanned = orphaned.filter((v) => v.size_bytes === null).length;
    this.reclaimable.textContent =
      `${count(orphaned.length)} orphaned · ${bytes(reclaim)} reclaimable` + (unscanned ? ` (${count(unscanned)} not scanned yet)` : "");
    this.recent.replaceChildren(
      ...this.store.recent.map((item) => el("li", { class: item.failed ? "scan-error" : "", dataset: { scanId: item.scanId } }, item.text)),
    );
    this.recentEmpty.hidden = this.store.recent.length > 0;
  }

  turn(step) {
    this.page += step;
    this.render();
  }

  row(volume) {
    const scan = this.store.scans.get(volume.name);
    const link = el("a", { href: `#/volume/${encodeURIComponent(volume.name)}` }, volume.name);
    return el(
      "tr",
      { dataset: { volume: volume.name } },
      el("th", { scope: "row" }, link),
      el("td", {}, volume.driver),
      el("td", { class: "num size", dataset: { bytes: volume.size_bytes ?? "" } }, bytes(volume.size_bytes)),
      el("td", { class: "num" }, bytes(volume.disk_usage_bytes)),
      el("td", { class: "num" }, count(volume.file_count)),
      el("td", { class: "num" }, count(volume.attachments_count)),
      el("td", {}, volume.is_orphaned ? "yes" : "no"),
      el("td", {}, when(volume.last_scan_at)),
      el("td", {}, volume.size_source || "—"),
      el("td", { class: "scan" }, scanCell(volume, scan, () => this.store.scan(volume.name))),
    );
  }
}

export function scanCell(volume, scan, start) {
  const running = scan && !scan.finished;
  const button = el("button", { type: "button", class: "scan-button", disabled: running, onclick: start, "aria-label": `scan ${volume.name}` }, "Scan");
  if (!scan) return [button];
  if (scan.error) return [button, el("span", { class: "scan-error", role: "alert" }, scan.error)];
  if (scan.finished) return [button, el("span", { class: "scan-done" }, `scanned: ${bytes(scan.size)}`)];
  const label = `${scan.progress}% · ${count(scan.files)} files · ${bytes(scan.bytes)}${scan.throttled ? " · throttled" : ""}`;
  return [
    button,
    el("progress", { class: "scan-progress", max: 100, value: scan.progress, "aria-label": `scan of ${volume.name}` }),
    el("span", { class: "scan-status" }, label),
  ];
}
