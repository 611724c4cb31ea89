// Squarified treemap (Bruls, Huizing, van Wijk 2000): rectangles whose areas are in
// proportion to the values, laid out row by row so they stay close to squares.

function worst(row, side, scale) {
  let sum = 0;
  let max = 0;
  let min = Infinity;
  for (const item of row) {
    const area = item.value * scale;
    sum += area;
    max = Math.max(max, area);
    min = Math.min(min, area);
  }
  const s2 = side * side;
  return Math.max((s2 * max) / (sum * sum), (sum * sum) / (s2 * min));
}

// items: [{value, ...}] with value > 0; returns [{item, x, y, width, height}].
export function squarify(items, width, height) {
  const sorted = items.filter((item) => item.value > 0).sort((a, b) => b.value - a.value);
  const total = sorted.reduce((sum, item) => sum + item.value, 0);
  const placed = [];
  if (!total || width <= 0 || height <= 0) return placed;
  const scale = (width * height) / total;
  let x = 0;
  let y = 0;
  let w = width;
  let h = height;
  let row = [];
  const layRow = () => {
    const area = row.reduce((sum, item) => sum + item.value * scale, 0);
    if (w >= h) {
      const rowWidth = area / h;
      let at = y;
      for (const item of row) {
        const itemHeight = (item.value * scale) / rowWidth;
        placed.push({ item, x, y: at, width: rowWidth, height: itemHeight });
        at += itemHeight;
      }
      x += rowWidth;
      w -= rowWidth;
    } else {
      const rowHeight = area / w;
      let at = x;
      for (const item of row) {
        const itemWidth = (item.value * scale) / rowHeight;
        placed.push({ item, x: at, y, width: itemWidth, height: rowHeight });
        at += itemWidth;
      }
      y += rowHeight;
      h -= rowHeight;
    }
    row = [];
  };
  for (const item of sorted) {
    const side = Math.min(w, h);
    if (row.length === 0 || worst([...row, item], side, scale) <= worst(row, side, scale)) {
      row.push(item);
    } else {
      layRow();
      row.push(item);
    }
  }
  if (row.length) layRow();
  return placed;
}
