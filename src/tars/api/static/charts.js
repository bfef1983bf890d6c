// Line charts drawn as inline SVG. A run can have far more episodes than the chart has pixels,
// so long series are reduced to the lowest and highest value per pixel column: the shape and the
// extremes stay, the number of SVG nodes stays small.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 240;
const MARGIN = { top: 12, right: 16, bottom: 34, left: 56 };
const MAX_DOTS = 200; // beyond this, a series is drawn as a line only

function element(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) node.setAttribute(attribute, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** About `count` round tick values covering [low, high]; whole numbers only if `integers`. */
export function ticks(low, high, count = 5, integers = false) {
  if (!(high > low)) return [low];
  const rough = Math.max((high - low) / count, integers ? 1 : 0);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step =
    [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough && (!integers || Number.isInteger(s))) || rough;
  const values = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    values.push(Number(value.toFixed(10)));
  }
  return values;
}

/** Points reduced to at most two per column of `columns` (the lowest and the highest), in x order. */
export function reduce(points, columns) {
  if (points.length <= columns * 2) return points;
  const first = points[0].x;
  const span = points[points.length - 1].x - first || 1;
  const buckets = new Map();
  for (const point of points) {
    const column = Math.min(columns - 1, Math.floor(((point.x - first) / span) * columns));
    const bucket = buckets.get(column);
    if (!bucket) buckets.set(column, { low: point, high: point });
    else {
      if (point.y < bucket.low.y) bucket.low = point;
      if (point.y > bucket.high.y) bucket.high = point;
    }
  }
  const reduced = [];
  for (const { low, high } of buckets.values()) {
    if (low === high) reduced.push(low);
    else if (low.x <= high.x) reduced.push(low, high);
    else reduced.push(high, low);
  }
  return reduced;
}

/** The mean of the last `window` values at each point, as training curves are usually smoothed. */
export function rollingMean(points, window) {
  const result = [];
  let sum = 0;
  for (let i = 0; i < points.length; i += 1) {
    sum += points[i].y;
    if (i >= window) sum -= points[i - window].y;
    result.push({ x: points[i].x, y: sum / Math.min(i + 1, window) });
  }
  return result;
}

function format(value) {
  const magnitude = Math.abs(value);
  if (magnitude >= 10_000) return value.toExponential(1);
  if (magnitude >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(magnitude >= 10 ? 1 : 2);
}

/**
 * Draws `series` into `container` (replacing what it held), and `markers`: a vertical line each at
 * an x within the series' range (where something began), with its label as tooltip and name.
 * @param {HTMLElement} container
 * @param {{name: string, className: string, points: {x: number, y: number, label?: string}[], dots?: boolean}[]} series
 * @param {{xLabel: string, yLabel: string, empty: string, xFormat?: (x: number) => string, integerX?: boolean,
 *          markers?: {x: number, label: string, className?: string, attributes?: object}[], markerName?: string}} options
 */
export function lineChart(
  container,
  series,
  { xLabel, yLabel, empty, xFormat = format, integerX = false, markers = [], markerName = "marker" },
) {
  const drawn = series.filter((s) => s.points.length > 0);
  container.dataset.points = String(series.length ? series[0].points.length : 0);
  container.dataset.markers = String(drawn.length ? markers.length : 0);
  if (drawn.length === 0) {
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = empty;
    container.replaceChildren(note);
    return;
  }
  // A loop, not Math.min(...points): a spread of a long run's episodes overflows the call stack.
  let [xLow, xHigh, yLow, yHigh] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const s of drawn) {
    for (const p of s.points) {
      if (p.x < xLow) xLow = p.x;
      if (p.x > xHigh) xHigh = p.x;
      if (p.y < yLow) yLow = p.y;
      if (p.y > yHigh) yHigh = p.y;
    }
  }
  if (xLow === xHigh) [xLow, xHigh] = integerX ? [xLow - 1, xHigh + 1] : [xLow - 0.5, xHigh + 0.5];
  if (yLow === yHigh) [yLow, yHigh] = [yLow - 1, yHigh + 1];
  const yPad = (yHigh - yLow) * 0.05;
  [yLow, yHigh] = [yLow - yPad, yHigh + yPad];

  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x) => MARGIN.left + ((x - xLow) / (xHigh - xLow)) * plotWidth;
  const sy = (y) => MARGIN.top + (1 - (y - yLow) / (yHigh - yLow)) * plotHeight;

  const svg = element("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart",
    role: "img",
    "aria-label": `${yLabel} by ${xLabel}`,
  });
  const grid = element("g", { class: "grid" });
  for (const value of ticks(yLow, yHigh)) {
    const y = sy(value);
    grid.append(element("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y }));
    grid.append(element("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, format(value)));
  }
  for (const value of ticks(xLow, xHigh, 6, integerX)) {
    const x = sx(value);
    grid.append(element("line", { x1: x, x2: x, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, class: "vertical" }));
    grid.append(element("text", { x, y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle" }, xFormat(value)));
  }
  grid.append(element("text", { x: MARGIN.left + plotWidth / 2, y: HEIGHT - 4, "text-anchor": "middle", class: "axis" }, xLabel));
  grid.append(
    element(
      "text",
      { x: 12, y: MARGIN.top + plotHeight / 2, "text-anchor": "middle", class: "axis", transform: `rotate(-90 12 ${MARGIN.top + plotHeight / 2})` },
      yLabel,
    ),
  );
  svg.append(grid);

  for (const s of drawn) {
    const points = reduce(s.points, plotWidth);
    const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
    const group = element("g", { class: `series ${s.className}`, "data-series": s.name });
    group.append(element("path", { d: path }));
    if (s.dots && s.points.length <= MAX_DOTS) {
      for (const p of s.points) {
        const dot = element("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3 });
        dot.append(element("title", {}, p.label || `${format(p.x)}: ${format(p.y)}`));
        group.append(dot);
      }
    }
    svg.append(group);
  }
  if (markers.length) svg.append(markerLayer(markers, sx));

  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of drawn) {
    const key = document.createElement("span");
    key.className = `key ${s.className}`;
    key.textContent = s.name;
    legend.append(key);
  }
  if (markers.length) {
    const key = document.createElement("span");
    key.className = "key marker";
    key.textContent = markerName;
    legend.append(key);
  }
  container.replaceChildren(svg, legend);
}

// Markers are focusable images named by their label, so a keyboard or screen reader reaches them too.
function markerLayer(markers, sx) {
  const layer = element("g", { class: "markers" });
  for (const marker of markers) {
    const x = sx(marker.x);
    const group = element("g", {
      ...(marker.attributes || {}),
      class: `marker ${marker.className || ""}`.trim(),
      "data-x": marker.x,
      role: "img",
      "aria-label": marker.label,
      tabindex: 0,
    });
    group.append(element("line", { x1: x.toFixed(1), x2: x.toFixed(1), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }));
    group.append(element("path", { d: `M${(x - 5).toFixed(1)},${MARGIN.top - 10}h10l-5,9z` }));
    group.append(element("title", {}, marker.label));
    layer.append(group);
  }
  return layer;
}
