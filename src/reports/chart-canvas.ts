// Drawing charts as PNG: chart.js on @napi-rs/canvas (its binary ships inside npm packages, unlike
// `canvas`, which chartjs-node-canvas needs and which fails to install offline), on white, titled.
import { createCanvas, type Canvas } from '@napi-rs/canvas';
import { Chart, registerables, type ChartConfiguration } from 'chart.js';

Chart.register(...registerables);

export const WIDTH = 1000;
export const HEIGHT = 560;

/** A plugin that paints the background white: PNGs are transparent otherwise (unreadable on dark viewers). */
const whiteBackground = {
  id: 'whiteBackground',
  beforeDraw(chart: Chart) {
    const { ctx } = chart;
    ctx.save();
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, chart.width, chart.height);
    ctx.restore();
  },
};

export function render(config: ChartConfiguration, width = WIDTH, height = HEIGHT): Buffer {
  return draw(config, (canvas) => canvas.toBuffer('image/png'), width, height);
}

/** Draws a chart and hands its canvas to `use` (destroying the chart clears the canvas). */
export function draw<T>(
  config: ChartConfiguration,
  use: (canvas: Canvas) => T,
  width = WIDTH,
  height = HEIGHT,
): T {
  const canvas = createCanvas(width, height);
  // chart.js only needs the 2D context API, which @napi-rs/canvas implements.
  const context = canvas.getContext('2d') as unknown as ConstructorParameters<typeof Chart>[0];
  const chart = new Chart(context, {
    ...config,
    options: { ...config.options, responsive: false, animation: false, devicePixelRatio: 1 },
    plugins: [...(config.plugins ?? []), whiteBackground],
  });
  try {
    return use(canvas);
  } finally {
    chart.destroy();
  }
}

export const titleFont = { size: 18, weight: 'bold' as const };

/** A white canvas with a centred bold title at `titleY`, drawing left in the title's colour, centred. */
export function titledCanvas(width: number, height: number, title: string, titleY: number) {
  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = '#222';
  ctx.textAlign = 'center';
  ctx.font = 'bold 18px sans-serif';
  ctx.fillText(title, width / 2, titleY);
  return { canvas, ctx };
}

/** A chart with only a message: what to draw when there is nothing to plot. */
export function messageChart(title: string, message: string): Buffer {
  const { canvas, ctx } = titledCanvas(WIDTH, HEIGHT, title, 40);
  ctx.font = '16px sans-serif';
  ctx.fillText(message, WIDTH / 2, HEIGHT / 2);
  return canvas.toBuffer('image/png');
}

/** Each bar's value above it (`n/a` where there is none): the numbers are what people look for. */
export function barLabels(format: (value: number) => string) {
  return {
    id: 'barValues',
    afterDatasetsDraw(chart: Chart) {
      const { ctx } = chart;
      ctx.save();
      ctx.fillStyle = '#222';
      ctx.font = '13px sans-serif';
      ctx.textAlign = 'center';
      chart.data.datasets.forEach((dataset, d) => {
        chart.getDatasetMeta(d).data.forEach((bar, i) => {
          const value = dataset.data[i];
          const text = typeof value === 'number' && Number.isFinite(value) ? format(value) : 'n/a';
          // A missing value has no bar: its label sits on the axis.
          const y = typeof value === 'number' && Number.isFinite(value) ? bar.y : chart.chartArea.bottom;
          ctx.fillText(text, bar.x, y - 6);
        });
      });
      ctx.restore();
    },
  };
}

/** 1, 2, 5, 10, 20, ...: the tick step that makes about `ticks` ticks over `span`. */
export function niceStep(span: number, ticks = 5): number {
  const raw = span / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) ?? 10 * power;
}

/**
 * Percent axis limits that fit the values with room around them (within 0-100): on a 0-100 axis
 * 16.5% and 19% look the same. Every value label then says the exact number.
 */
export function fittedPercentRange(values: Array<number | null>): { min: number; max: number } {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return { min: 0, max: 100 };
  const low = Math.min(...finite);
  const high = Math.max(...finite);
  const span = Math.max(high - low, 2);
  const step = niceStep(span);
  const min = Math.max(0, Math.floor((low - span / 2) / step) * step);
  const max = Math.min(100, Math.ceil((high + span / 2) / step) * step);
  return { min, max: max > min ? max : min + step };
}
