// Charts as standalone SVG strings (no DOM, no browser): line charts for the learning curves,
// horizontal bars for per-class accuracy and the bench, a heatmap for the confusion matrix.
// d3-scale maps the data onto the plot and picks the axes' ticks (round numbers, "nice" ends);
// the SVG elements are written here. Apache ECharts drew them before, but its package is 62 MB
// unpacked: it pushed the GPU check's bundle past the GPU machine's 64 MiB transfer limit, where
// d3-scale and its dependencies are 1.2 MB.
import { scaleBand, scaleLinear } from "d3-scale";

export interface Series {
  name: string;
  /** [x, y] pairs; y NaN or missing points are simply left out by the caller. */
  points: [number, number][];
}

const PALETTE = ["#3b6fc6", "#d9822b", "#2a9d5c", "#b34d9e", "#777777"];
const AXIS = 'stroke="#555555" fill="none"';
const GRID = 'stroke="#e4e4e4" fill="none"';

const escapeXml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const num = (v: number) => v.toFixed(1);

/** A text element at (x, y); `attributes` adds anchor, size, rotation. */
function label(x: number, y: number, content: string, attributes = ""): string {
  return `<text x="${num(x)}" y="${num(y)}" ${attributes}>${escapeXml(content)}</text>`;
}

/** An axis name written bottom to top, centred on (x, y). */
function verticalLabel(x: number, y: number, content: string): string {
  return label(x, y, content, `text-anchor="middle" transform="rotate(-90 ${num(x)} ${num(y)})"`);
}

/** A path through the points (M, then L). */
function polyline(points: [number, number][], attributes: string): string {
  const d = points.map(([x, y], i) => `${i === 0 ? "M" : "L"}${num(x)},${num(y)}`).join("");
  return `<path d="${d}" ${attributes}/>`;
}

/** The standalone SVG: white background, the title at the top left, then the body. */
function svg(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"`,
    ` font-family="sans-serif" font-size="12" fill="#333333">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    label(8, 20, title, 'font-size="14" font-weight="bold"'),
    ...body,
    "</svg>",
  ].join("");
}

/** [min, max] of values, widened to a unit interval around a single value (or [0, 1] for none). */
function extent(values: number[]): [number, number] {
  if (values.length === 0) return [0, 1];
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/** Lines of y against x, one per series, with a legend; `percent` shows y as a percentage. */
export function lineChart(
  options: { title: string; xName: string; yName: string; series: Series[]; percent?: boolean },
): string {
  const [width, height, left, right, top, bottom] = [520, 300, 72, 24, 44, 48];
  const points = options.series.flatMap((s) => s.points);
  const x = scaleLinear().domain(extent(points.map((p) => p[0]))).range([left, width - right]).nice();
  const y = scaleLinear().domain(extent(points.map((p) => p[1]))).range([height - bottom, top]).nice();
  const yLabel = options.percent ? (v: number) => `${(100 * v).toFixed(1)}%` : y.tickFormat(5);
  const xLabel = x.tickFormat(6);
  const body: string[] = [];
  for (const t of y.ticks(5)) {
    body.push(polyline([[left, y(t)], [width - right, y(t)]], GRID));
    body.push(label(left - 6, y(t) + 4, yLabel(t), 'text-anchor="end"'));
  }
  for (const t of x.ticks(6)) {
    body.push(label(x(t), height - bottom + 16, xLabel(t), 'text-anchor="middle"'));
  }
  body.push(polyline([[left, top], [left, height - bottom], [width - right, height - bottom]], AXIS));
  body.push(label((left + width - right) / 2, height - 10, options.xName, 'text-anchor="middle"'));
  const middle = (top + height - bottom) / 2;
  body.push(verticalLabel(16, middle, options.yName));
  options.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length],
      at = s.points.map(([a, b]) => [x(a), y(b)] as [number, number]);
    body.push(polyline(at, `stroke="${color}" stroke-width="2" fill="none"`));
    if (s.points.length <= 60) {
      for (const [a, b] of at) body.push(`<circle cx="${num(a)}" cy="${num(b)}" r="2.5" fill="${color}"/>`);
    }
    const legendX = width - right - 110 * (options.series.length - i);
    body.push(polyline([[legendX, 16], [legendX + 20, 16]], `stroke="${color}" stroke-width="2"`));
    body.push(label(legendX + 25, 20, s.name));
  });
  return svg(width, height, options.title, body);
}

/** Horizontal bars, one per label (top to bottom in the given order), each value printed at its end. */
export function barChart(
  options: {
    title: string;
    labels: string[];
    values: number[];
    colors?: string[];
    format: (v: number) => string;
    width?: number;
  },
): string {
  const width = options.width ?? 520, height = 60 + 26 * options.labels.length;
  // The labels' column: about 6.5 px per character of the longest label.
  const left = 16 + 6.5 * Math.max(0, ...options.labels.map((l) => l.length)), right = 90;
  const y = scaleBand<number>().domain(options.labels.map((_, i) => i)).range([36, height - 16]).padding(
    0.25,
  );
  const x = scaleLinear().domain([0, Math.max(0, ...options.values)]).range([left, width - right]);
  const body = options.values.flatMap((value, i) => {
    const [top, h, end] = [y(i)!, y.bandwidth(), x(Math.max(0, value))];
    const fill = options.colors?.[i] ?? PALETTE[0];
    return [
      `<path d="M${num(left)},${num(top)}H${num(end)}V${num(top + h)}H${num(left)}Z" fill="${fill}"/>`,
      label(left - 6, top + h / 2 + 4, options.labels[i], 'text-anchor="end"'),
      label(end + 5, top + h / 2 + 4, options.format(value)),
    ];
  });
  body.push(polyline([[left, 36], [left, height - 16]], AXIS));
  return svg(width, height, options.title, body);
}

/** A labelled grid of counts: rows[i][j] at row label i, column label j, shaded by value. */
export function heatmap(
  options: { title: string; rowName: string; columnName: string; labels: string[]; rows: number[][] },
): string {
  const { labels, rows } = options;
  const [width, height, left, right, top, bottom] = [560, 520, 90, 16, 40, 80];
  const indices = labels.map((_, i) => i);
  const column = scaleBand<number>().domain(indices).range([left, width - right]);
  const row = scaleBand<number>().domain(indices).range([top, height - bottom]);
  // Shaded by the largest off-diagonal count, so the mistakes stand out next to the diagonal.
  const max = Math.max(1, ...rows.flatMap((r, i) => r.filter((_, j) => j !== i)));
  const shade = scaleLinear<string>().domain([0, max]).range(["#ffffff", "#3b6fc6"]).clamp(true);
  const [w, h] = [column.bandwidth(), row.bandwidth()];
  const body = rows.flatMap((r, i) =>
    r.map((count, j) => {
      const [cx, cy] = [column(j)!, row(i)!];
      const ink = count > max / 2 ? "#ffffff" : "#333333";
      return `<path d="M${num(cx)},${num(cy)}h${num(w)}v${num(h)}h${num(-w)}Z" fill="${shade(count)}"/>` +
        label(cx + w / 2, cy + h / 2 + 4, String(count), `text-anchor="middle" font-size="10" fill="${ink}"`);
    })
  );
  for (const i of indices) {
    body.push(label(left - 6, row(i)! + h / 2 + 4, labels[i], 'text-anchor="end"'));
    const [lx, ly] = [column(i)! + w / 2, height - bottom + 12];
    body.push(label(lx, ly, labels[i], `text-anchor="end" transform="rotate(-45 ${num(lx)} ${ly})"`));
  }
  body.push(label((left + width - right) / 2, height - 12, options.columnName, 'text-anchor="middle"'));
  const middle = (top + height - bottom) / 2;
  body.push(verticalLabel(14, middle, options.rowName));
  return svg(width, height, options.title, body);
}
