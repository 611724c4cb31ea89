// One volume: its containers, what inside takes the space (treemap and table, clickable
// to descend), its largest files, what grew since the previous scan, and its growth.
import { api } from "./api.js";
import { historyChart, fullText } from "./chart.js";
import { bytes, count, el, percent, signedBytes, svg, when } from "./format.js";
import { squarify } from "./treemap.js";
import { scanCell } from "./volumes.js";

const MAP_WIDTH = 640;
const MAP_HEIGHT = 360;

export function volumeHref(id, path = "/") {
  const base = `#/volume/${encodeURIComponent(id)}`;
  return path === "/" ? base : `${base}?path=${encodeURIComponent(path)}`;
}

export class VolumeDetail {
  constructor(store, id, path) {
    this.store = store;
    this.id = id;
    this.path = path;
    this.scanSlot = el("div", { class: "scan" });
    this.figures = el("dl", { class: "figures" });
    this.attachments = el("section", { class: "attachments" });
    this.inside = el("section", { class: "inside", id: "inside" });
    this.largest = el("section", { class: "largest" });
    this.changes = el("section", { class: "changes" });
    this.growth = el("section", { class: "growth" });
    this.root = el(
      "section",
      { class: "detail" },
      el("p", {}, el("a", { href: "#/" }, "← all volumes")),
      el("h1", {}, id),
      this.scanSlot,
      this.figures,
      el("div", { class: "columns" }, this.inside, el("div", {}, this.largest, this.changes)),
      el("div", { class: "columns" }, this.attachments, this.growth),
    );
  }

  async load() {
    try {
      const volume = await api.volume(this.id);
      this.volume = volume;
      this.showFigures(volume);
      this.showAttachments(volume.attachments);
      this.renderScan();
    } catch (error) {
      this.root.replaceChildren(el("p", { class: "scan-error", role: "alert" }, error.message), el("a", { href: "#/" }, "all volumes"));
      return;
    }
    await Promise.all([this.loadTree(), this.loadFiles(), this.loadChanges(), this.loadGrowth()]);
  }

  renderScan() {
    if (!this.volume) return;
    this.scanSlot.replaceChildren(...scanCell(this.volume, this.store.scans.get(this.id), () => this.store.scan(this.id)));
  }

  showFigures(volume) {
    const pairs = [
      ["Size", bytes(volume.size_bytes)],
      ["Disk usage", bytes(volume.disk_usage_bytes)],
      ["Files", count(volume.file_count)],
      ["Driver", volume.driver],
      ["Last scanned", when(volume.last_scan_at)],
      ["Figures from", volume.size_source || "no scan yet"],
      ["Orphaned", volume.is_orphaned ? "yes" : "no"],
    ];
    this.figures.replaceChildren(...pairs.map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))));
  }

  showAttachments(attachments) {
    const rows = attachments.map((a) =>
      el("tr", {}, el("td", {}, a.container_name), el("td", {}, a.state), el("td", {}, a.mount_path), el("td", {}, a.rw ? "rw" : "ro")),
    );
    this.attachments.replaceChildren(
      el("h2", {}, "Containers"),
      rows.length
        ? el("table", {}, el("thead", {}, el("tr", {}, ["Container", "State", "Mounted at", "Mode"].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows))
        : el("p", {}, "No container uses this volume."),
    );
  }

  async loadTree() {
    const heading = el("h2", {}, "Inside");
    try {
      const body = await api.tree(this.id, this.path);
      this.inside.replaceChildren(heading, this.breadcrumbs(body.node.path), treemap(this.id, body.node), treeTable(this.id, body.node));
    } catch (error) {
      const text = error.code === "NO_TREE_YET" ? "Scan this volume (native method) to see what takes the space inside." : error.message;
      this.inside.replaceChildren(heading, el("p", { class: "empty" }, text));
    }
  }

  breadcrumbs(path) {
    const parts = path.split("/").filter(Boolean);
    const crumbs = [el("a", { href: volumeHref(this.id) }, "/")];
    parts.forEach((part, i) => {
      crumbs.push(" ", el("a", { href: volumeHref(this.id, `/${parts.slice(0, i + 1).join("/")}`) }, part), " /");
    });
    return el("nav", { class: "crumbs", "aria-label": "path" }, crumbs);
  }

  async loadFiles() {
    const heading = el("h2", {}, "Largest files");
    try {
      const body = await api.largest(this.id);
      const rows = body.data.map((f) => el("tr", {}, el("td", { class: "path" }, f.path), el("td", { class: "num" }, bytes(f.size))));
      this.largest.replaceChildren(heading, el("table", { id: "largest-files" }, el("tbody", {}, rows)));
    } catch (error) {
      this.largest.replaceChildren(heading, el("p", { class: "empty" }, error.code === "NO_TREE_YET" ? "No scan has listed the files yet." : error.message));
    }
  }

  async loadChanges() {
    const heading = el("h2", {}, "What grew since the previous scan");
    try {
      const body = await api.changes(this.id);
      if (!body.before) {
        this.changes.replaceChildren(heading, el("p", { class: "empty" }, "Needs a second scan to compare."));
        return;
      }
      const rows = body.data.map((c) =>
        el("tr", {}, el("td", { class: "path" }, c.path), el("td", { class: `num ${c.delta > 0 ? "grew" : "shrank"}` }, signedBytes(c.delta)), el("td", { class: "num" }, bytes(c.after))),
      );
      this.changes.replaceChildren(heading, rows.length ? el("table", { id: "changes" }, el("tbody", {}, rows)) : el("p", {}, "Nothing changed."));
    } catch (error) {
      this.changes.replaceChildren(heading, el("p", { class: "empty" }, error.code === "NO_TREE_YET" ? "No scan to compare yet." : error.message));
    }
  }

  async loadGrowth() {
    const heading = el("h2", {}, "Growth");
    try {
      const [history, forecast] = await Promise.all([api.history(this.id), api.forecast(this.id)]);
      const rate = forecast.growth_bytes_per_day;
      this.growth.replaceChildren(
        heading,
        historyChart(history.data, forecast),
        el("p", { id: "forecast" }, rate === null ? "" : `${signedBytes(Math.round(rate))} a day · `, fullText(forecast)),
      );
    } catch (error) {
      this.growth.replaceChildren(heading, el("p", { class: "empty" }, error.message));
    }
  }
}

function treemap(id, node) {
  const items = (node.children || []).map((child) => ({ value: child.disk, child }));
  if (node.other) items.push({ value: node.other.disk, other: node.other });
  if (node.own.disk) items.push({ value: node.own.disk, own: true });
  const figure = svg("svg", { viewBox: `0 0 ${MAP_WIDTH} ${MAP_HEIGHT}`, class: "treemap", id: "treemap", role: "img", "aria-label": `what takes the space in ${node.path}` });
  squarify(items, MAP_WIDTH, MAP_HEIGHT).forEach(({ item, x, y, width, height }, index) => {
    const label = item.child ? item.child.name : item.other ? "other" : "files here";
    const rect = svg("rect", {
      x: x.toFixed(2),
      y: y.toFixed(2),
      width: width.toFixed(2),
      height: height.toFixed(2),
      class: `tile tone${index % 6}${item.child ? "" : " rest"}`,
      "data-disk": item.value,
      "data-name": label,
    });
    const title = svg("title", {}, `${label}: ${bytes(item.value)}`);
    const text = width > 60 && height > 18 ? svg("text", { x: x + 4, y: y + 14, class: "tile-label" }, label) : null;
    if (item.child) {
      figure.append(svg("a", { href: volumeHref(id, item.child.path), "data-path": item.child.path }, rect, title, text));
    } else {
      figure.append(svg("g", {}, rect, title, text));
    }
  });
  return figure;
}

function treeTable(id, node) {
  const rows = (node.children || []).map((child) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" }, el("a", { href: volumeHref(id, child.path) }, child.name)),
      el("td", { class: "num" }, bytes(child.disk)),
      el("td", { class: "num" }, bytes(child.apparent)),
      el("td", { class: "num" }, count(child.files)),
      el("td", { class: "num" }, percent(child.share)),
    ),
  );
  if (node.other) {
    rows.push(el("tr", { class: "rest" }, el("th", { scope: "row" }, `other (${count(node.other.dirs)} small directories)`), el("td", { class: "num" }, bytes(node.other.disk)), el("td", { class: "num" }, bytes(node.other.apparent)), el("td", { class: "num" }, count(node.other.files)), el("td", { class: "num" }, percent(node.other.share))));
  }
  rows.push(el("tr", { class: "rest" }, el("th", { scope: "row" }, "files directly here"), el("td", { class: "num" }, bytes(node.own.disk)), el("td", { class: "num" }, bytes(node.own.apparent)), el("td", { class: "num" }, count(node.own.files)), el("td", {}, "")));
  return el(
    "table",
    { id: "tree-table" },
    el("thead", {}, el("tr", {}, ["Directory", "Disk", "Apparent", "Files", "Share"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows),
  );
}
