// The size history as an SVG line, with the forecast's line and where it would fill up.
import { bytes, svg, when } from "./format.js";

const WIDTH = 640;
const HEIGHT = 220;
const PAD = { left: 70, right: 16, top: 12, bottom: 28 };

export function historyChart(points, forecast) {
  const figure = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart",
    role: "img",
    "aria-label": "size over time",
  });
  if (points.length === 0) {
    figure.append(svg("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle" }, "no history yet"));
    return figure;
  }
  const times = points.map((p) => Date.parse(p.scanned_at));
  const sizes = points.map((p) => p.total_size);
  let end = Math.max(...times);
  let top = Math.max(...sizes);
  const projected = forecast && forecast.projected_size_bytes !== null ? forecast.projected_size_bytes : null;
  if (projected !== null) {
    end = Math.max(end, Date.parse(forecast.projected_at));
    top = Math.max(top, projected);
  }
  const start = Math.min(...times);
  const spanT = Math.max(end - start, 1);
  const spanV = Math.max(top, 1);
  const px = (t) => PAD.left + ((t - start) / spanT) * (WIDTH - PAD.left - PAD.right);
  const py = (v) => HEIGHT - PAD.bottom - (v / spanV) * (HEIGHT - PAD.top - PAD.bottom);
  figure.append(
    svg("line", { x1: PAD.left, y1: py(0), x2: WIDTH - PAD.right, y2: py(0), class: "axis" }),
    svg("text", { x: PAD.left - 6, y: py(spanV) + 4, "text-anchor": "end", class: "tick" }, bytes(spanV)),
    svg("text", { x: PAD.left - 6, y: py(0), "text-anchor": "end", class: "tick" }, "0"),
    svg("text", { x: PAD.left, y: HEIGHT - 8, class: "tick" }, when(new Date(start).toISOString())),
  );
  const line = times.map((t, i) => `${i ? "L" : "M"}${px(t).toFixed(1)},${py(sizes[i]).toFixed(1)}`).join(" ");
  figure.append(svg("path", { d: line, class: "series" }));
  for (let i = 0; i < times.length; i++) {
    figure.append(svg("circle", { cx: px(times[i]), cy: py(sizes[i]), r: 2.5, class: "point" }));
  }
  if (projected !== null) {
    const last = times.length - 1;
    figure.append(
      svg("path", {
        d: `M${px(times[last])},${py(sizes[last])} L${px(Date.parse(forecast.projected_at))},${py(projected)}`,
        class: "forecast",
      }),
    );
  }
  return figure;
}

export function fullText(forecast) {
  if (!forecast || forecast.confidence === "insufficient_data") return "not enough history to say";
  if (forecast.full_at) return `full on ${when(forecast.full_at)} at this rate`;
  return "not at this rate";
}
