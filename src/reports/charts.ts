// Charts as PNG: chart.js drawn on @napi-rs/canvas (its binary ships inside npm packages, unlike
// `canvas`, which chartjs-node-canvas needs and which fails to install offline).
import { createCanvas, type Canvas } from '@napi-rs/canvas';
import { Chart, registerables, type ChartConfiguration } from 'chart.js';

Chart.register(...registerables);

const WIDTH = 1000;
const HEIGHT = 560;

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

function render(config: ChartConfiguration, width = WIDTH, height = HEIGHT): Buffer {
  return draw(config, (canvas) => canvas.toBuffer('image/png'), width, height);
}

/** Draws a chart and hands its canvas to `use` (destroying the chart clears the canvas). */
function draw<T>(config: ChartConfiguration, use: (canvas: Canvas) => T, width = WIDTH, height = HEIGHT): T {
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

const titleFont = { size: 18, weight: 'bold' as const };

/** metrics.png: test accuracy per class and in total, as the ancestor drew it (percent, labelled bars). */
export function renderAccuracyChart(
  title: string,
  classNames: string[],
  perClass: number[],
  total: number,
): Buffer {
  const labels = [...classNames, 'total'];
  const values = [...perClass, total].map((v) => Math.round(v * 1000) / 10);
  const colours = labels.map((_, i) => (i === labels.length - 1 ? '#d62728' : '#1f77b4'));
  return render({
    type: 'bar',
    data: { labels, datasets: [{ label: 'test accuracy (%)', data: values, backgroundColor: colours }] },
    options: {
      plugins: {
        title: { display: true, text: title, font: titleFont },
        legend: { display: false },
      },
      scales: {
        y: { min: 0, max: 100, title: { display: true, text: 'accuracy (%)' } },
        x: { ticks: { font: { size: 13 } } },
      },
    },
    plugins: [
      {
        // Values on top of the bars: the numbers are what people look for.
        id: 'barValues',
        afterDatasetsDraw(chart: Chart) {
          const { ctx } = chart;
          ctx.save();
          ctx.fillStyle = '#222';
          ctx.font = '13px sans-serif';
          ctx.textAlign = 'center';
          chart.getDatasetMeta(0).data.forEach((bar, i) => {
            ctx.fillText(`${values[i]!.toFixed(1)}`, bar.x, bar.y - 6);
          });
          ctx.restore();
        },
      },
    ],
  });
}

export interface CurvePoint {
  epoch: number;
  trainLoss: number;
  validationLoss: number;
  validationAccuracy: number;
  trainAccuracy?: number;
}

/** curves.png: loss (left axis) and accuracy (right axis) per epoch. */
export function renderCurves(title: string, history: CurvePoint[]): Buffer {
  const labels = history.map((h) => String(h.epoch));
  return render({
    type: 'line',
    data: {
      labels,
      datasets: [
        {
          label: 'train loss',
          data: history.map((h) => h.trainLoss),
          borderColor: '#1f77b4',
          yAxisID: 'loss',
        },
        {
          label: 'validation loss',
          data: history.map((h) => h.validationLoss),
          borderColor: '#ff7f0e',
          yAxisID: 'loss',
        },
        {
          label: 'validation accuracy (%)',
          data: history.map((h) => h.validationAccuracy * 100),
          borderColor: '#2ca02c',
          borderDash: [6, 4],
          yAxisID: 'accuracy',
        },
      ],
    },
    options: {
      plugins: { title: { display: true, text: title, font: titleFont } },
      scales: {
        x: { title: { display: true, text: 'epoch' } },
        loss: { type: 'linear', position: 'left', title: { display: true, text: 'loss' }, beginAtZero: true },
        accuracy: {
          type: 'linear',
          position: 'right',
          min: 0,
          max: 100,
          title: { display: true, text: 'accuracy (%)' },
          grid: { drawOnChartArea: false },
        },
      },
    },
  });
}

export interface ComparedRun {
  name: string;
  /** Test accuracy (0-1), or null when the run has none (interrupted). */
  testAccuracy: number | null;
  history: Array<{ epoch: number; validationAccuracy: number }>;
}

const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

/** comparison.png: test accuracy per run (bars; the best run named in the title) above validation accuracy per epoch (one line per run). */
export function renderComparison(title: string, runs: ComparedRun[], best: string | null): Buffer {
  const canvas = createCanvas(WIDTH, 2 * HEIGHT);
  const ctx = canvas.getContext('2d');
  const values = runs.map((r) => (r.testAccuracy === null ? 0 : Math.round(r.testAccuracy * 1000) / 10));
  draw(
    {
      type: 'bar',
      data: {
        labels: runs.map((r) => r.name),
        datasets: [
          {
            label: 'test accuracy (%)',
            data: values,
            // Each run keeps its colour in both charts.
            backgroundColor: runs.map((_, i) => PALETTE[i % PALETTE.length]!),
          },
        ],
      },
      options: {
        plugins: {
          title: {
            display: true,
            text: `${title}: test accuracy per run (%)${best ? `, best validation accuracy: ${best}` : ''}`,
            font: titleFont,
          },
          legend: { display: false },
        },
        scales: { y: { min: 0, max: 100, title: { display: true, text: 'accuracy (%)' } } },
      },
    },
    (bars) => ctx.drawImage(bars, 0, 0),
  );
  const epochs = Math.max(1, ...runs.map((r) => r.history.length));
  draw(
    {
      type: 'line',
      data: {
        labels: Array.from({ length: epochs }, (_, i) => String(i + 1)),
        datasets: runs.map((r, i) => ({
          label: r.name,
          data: r.history.map((h) => h.validationAccuracy * 100),
          borderColor: PALETTE[i % PALETTE.length],
          backgroundColor: PALETTE[i % PALETTE.length],
        })),
      },
      options: {
        plugins: { title: { display: true, text: 'validation accuracy per epoch (%)', font: titleFont } },
        scales: {
          x: { title: { display: true, text: 'epoch' } },
          y: { min: 0, max: 100, title: { display: true, text: 'accuracy (%)' } },
        },
      },
    },
    (curves) => ctx.drawImage(curves, 0, HEIGHT),
  );
  return canvas.toBuffer('image/png');
}
