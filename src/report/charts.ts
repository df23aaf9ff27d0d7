// Charts as SVG strings, drawn by Apache ECharts' server-side renderer (no DOM, no browser):
// line charts for the learning curves, bars for per-class accuracy and the bench, a heatmap for
// the confusion matrix. Every chart is static (no animation), so the SVG is final as returned.
import * as echarts from "echarts";

type Option = echarts.EChartsCoreOption;

export interface Series {
  name: string;
  /** [x, y] pairs; y NaN or missing points are simply left out by the caller. */
  points: [number, number][];
}

const PALETTE = ["#3b6fc6", "#d9822b", "#2a9d5c", "#b34d9e", "#777777"];

/** Renders one ECharts option to a standalone SVG element of the given size. */
export function renderSvg(option: Option, width: number, height: number): string {
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  chart.setOption({ animation: false, color: PALETTE, textStyle: { fontFamily: "sans-serif" }, ...option });
  const svg = chart.renderToSVGString();
  chart.dispose();
  return svg;
}

const title = (text: string) => ({ text, left: 8, top: 4, textStyle: { fontSize: 14 } });

/** Lines of y against x, one per series, with a legend; `percent` shows y as a percentage. */
export function lineChart(
  options: { title: string; xName: string; yName: string; series: Series[]; percent?: boolean },
): string {
  const option: Option = {
    title: title(options.title),
    legend: { top: 4, right: 8 },
    grid: { left: 72, right: 24, top: 44, bottom: 48 },
    xAxis: {
      type: "value",
      name: options.xName,
      nameLocation: "middle",
      nameGap: 28,
      scale: true,
      minInterval: 1,
    },
    yAxis: {
      type: "value",
      name: options.yName,
      nameLocation: "middle",
      nameGap: 56,
      scale: true,
      axisLabel: options.percent ? { formatter: (v: number) => `${(100 * v).toFixed(1)}%` } : {},
    },
    series: options.series.map((s) => ({
      name: s.name,
      type: "line",
      data: s.points,
      showSymbol: s.points.length <= 60,
    })),
  };
  return renderSvg(option, 520, 300);
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
  const height = 60 + 26 * options.labels.length;
  const option: Option = {
    title: title(options.title),
    grid: { left: 8, right: 90, top: 36, bottom: 16, containLabel: true },
    xAxis: { type: "value", show: false },
    yAxis: { type: "category", data: options.labels, inverse: true, axisTick: { show: false } },
    series: [{
      type: "bar",
      data: options.values.map((value, i) => ({
        value,
        itemStyle: options.colors ? { color: options.colors[i] } : undefined,
      })),
      label: { show: true, position: "right", formatter: (p: { value: number }) => options.format(p.value) },
    }],
  };
  return renderSvg(option, options.width ?? 520, height);
}

/** A labelled grid of counts: rows[i][j] at row label i, column label j, shaded by value. */
export function heatmap(
  options: { title: string; rowName: string; columnName: string; labels: string[]; rows: number[][] },
): string {
  const { labels, rows } = options;
  const data = rows.flatMap((row, i) => row.map((count, j) => [j, i, count]));
  const max = Math.max(1, ...rows.flatMap((row, i) => row.filter((_, j) => j !== i)));
  const option: Option = {
    title: title(options.title),
    grid: { left: 90, right: 16, top: 40, bottom: 80 },
    xAxis: {
      type: "category",
      data: labels,
      name: options.columnName,
      nameLocation: "middle",
      nameGap: 62,
      axisLabel: { rotate: 45, interval: 0 },
    },
    yAxis: {
      type: "category",
      data: labels,
      inverse: true,
      name: options.rowName,
      nameLocation: "middle",
      nameGap: 78,
      axisLabel: { interval: 0 },
    },
    // Shaded by the largest off-diagonal count, so the mistakes stand out next to the diagonal.
    visualMap: { show: false, min: 0, max, inRange: { color: ["#ffffff", "#3b6fc6"] } },
    series: [{ type: "heatmap", data, label: { show: true, fontSize: 10 } }],
  };
  return renderSvg(option, 560, 520);
}
