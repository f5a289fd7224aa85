// Compares the runs of one experiment: a table of the runs (the configuration that matters, the backend,
// accuracy, speed) and charts (test accuracy per run; a per-epoch metric, one line per run). The runs are
// read with the library's loadRun. The best run is the one with the best validation accuracy (the last
// epoch's), as `image-classifier-trainer runs` and `sweep` pick it: the test split stays for the end.
//
// compare-runs.ipynb (Deno's Jupyter kernel) imports this module; test/ship-notebook.test.ts runs the
// module and the notebook's own cells on small synthetic runs. Values returned by `table()` and `png()`
// display as Markdown and images in Jupyter (Deno renders any value with a Symbol.for('Jupyter.display')
// method); elsewhere they are plain objects.
import { Buffer } from 'node:buffer';
import { createCanvas } from '@napi-rs/canvas';
import { Chart, registerables, type ChartConfiguration } from 'chart.js';
import { compareRuns, differingKeys as configKeysThatDiffer, loadRun, type LoadedRun } from '../src/index.js';

Chart.register(...registerables);

/** The completed runs of an experiment (as `image-classifier-trainer runs` finds them), in natural order. */
export async function listRuns(experiment: string, experimentsFolder = '../experiments'): Promise<string[]> {
  const { rows } = await compareRuns(experiment, { experimentsFolder, writeChart: false });
  return rows
    .filter((r) => r.status === 'completed')
    .map((r) => r.run)
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/** Every completed run of an experiment, through the library (manifest, metrics, model). */
export async function loadExperiment(
  experiment: string,
  experimentsFolder = '../experiments',
): Promise<LoadedRun[]> {
  const names = await listRuns(experiment, experimentsFolder);
  return Promise.all(names.map((name) => loadRun(`${experiment}/${name}`, experimentsFolder)));
}

export interface RunRow {
  run: string;
  model: string;
  dataset: string;
  epochs: number;
  batchSize: number;
  learningRate: number;
  momentum: number;
  seed: number;
  pretrainedModel: string;
  backend: string;
  /** Test accuracy, 0-1; NaN when the run had no test split (run.json holds null). */
  testAccuracy: number;
  /** Validation accuracy after the last epoch, 0-1: what the best run is picked by. */
  validationAccuracy: number;
  /** Best validation accuracy over the epochs, 0-1. */
  bestValidationAccuracy: number;
  trainSeconds: number;
  imagesPerSecond: number;
}

/** One row per run: its key configuration and its results. */
export function runTable(runs: LoadedRun[]): RunRow[] {
  return runs.map(({ manifest, metrics }) => ({
    run: manifest.run,
    model: manifest.config.model,
    dataset: manifest.config.dataset,
    epochs: manifest.config.epochs,
    batchSize: manifest.config.batchSize,
    learningRate: manifest.config.learningRate,
    momentum: manifest.config.momentum,
    seed: manifest.config.seed,
    pretrainedModel: manifest.config.pretrainedModel ?? '',
    backend: `${manifest.backend.name} (${manifest.backend.threads})`,
    // JSON has null where there was no test split.
    testAccuracy: manifest.results.testAccuracy ?? NaN,
    validationAccuracy: manifest.results.validationAccuracy,
    bestValidationAccuracy: Math.max(0, ...metrics.history.map((h) => h.validationAccuracy)),
    trainSeconds: manifest.timing.trainSeconds,
    imagesPerSecond: manifest.timing.imagesPerSecond,
  }));
}

/** The configuration keys whose values differ between the runs (the run name aside), as `runs` shows them. */
export function differingKeys(runs: LoadedRun[]): string[] {
  return configKeysThatDiffer(runs.map((r) => r.manifest.config));
}

/**
 * The best run by validation accuracy (ties: the first), or null when there are none: the same
 * choice as `runs` and `sweep` make. Choosing by test accuracy would tune on the test split.
 */
export function bestRun(rows: RunRow[]): RunRow | null {
  return rows.reduce<RunRow | null>(
    (best, row) => (!best || row.validationAccuracy > best.validationAccuracy ? row : best),
    null,
  );
}

const percent = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(2)}%` : '-');

/** The table as Markdown, the best run in bold. */
export function toMarkdown(rows: RunRow[]): string {
  const best = bestRun(rows);
  const header = [
    'run',
    'model',
    'dataset',
    'epochs',
    'batch',
    'lr',
    'momentum',
    'seed',
    'pretrained',
    'backend',
    'val. acc.',
    'test acc.',
    'best val. acc.',
    'train s',
    'img/s',
  ];
  const lines = rows.map((r) => {
    const name = r === best ? `**${r.run}**` : r.run;
    return [
      name,
      r.model,
      r.dataset,
      r.epochs,
      r.batchSize,
      r.learningRate,
      r.momentum,
      r.seed,
      r.pretrainedModel || '-',
      r.backend,
      percent(r.validationAccuracy),
      percent(r.testAccuracy),
      percent(r.bestValidationAccuracy),
      r.trainSeconds.toFixed(1),
      Math.round(r.imagesPerSecond),
    ].join(' | ');
  });
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...lines.map((l) => `| ${l} |`),
  ].join('\n');
}

/** Something Jupyter displays with the given MIME bundle (and a plain-text fallback). */
export interface Displayable {
  bundle: Record<string, string>;
  [Symbol.toPrimitive](): string;
}

function displayable(bundle: Record<string, string>): Displayable {
  return {
    bundle,
    [Symbol.for('Jupyter.display')]: () => bundle,
    [Symbol.toPrimitive]: () => bundle['text/plain'] ?? '',
  } as Displayable;
}

/** The rows as a Markdown table in Jupyter. */
export function table(rows: RunRow[]): Displayable {
  const markdown = toMarkdown(rows);
  return displayable({ 'text/markdown': markdown, 'text/plain': markdown });
}

/** A PNG as an image in Jupyter. */
export function png(image: Uint8Array): Displayable {
  return displayable({
    'image/png': Buffer.from(image).toString('base64'),
    'text/plain': `<PNG, ${image.byteLength} bytes>`,
  });
}

const TITLE_FONT = { size: 16, weight: 'bold' as const };

/** Line colours, one per run (cycled). */
export const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
];

function render(config: ChartConfiguration, width = 900, height = 480): Buffer {
  const canvas = createCanvas(width, height);
  // chart.js needs only the 2D context API, which @napi-rs/canvas implements.
  const context = canvas.getContext('2d') as unknown as ConstructorParameters<typeof Chart>[0];
  const chart = new Chart(context, {
    ...config,
    options: { ...config.options, responsive: false, animation: false, devicePixelRatio: 1 },
    plugins: [
      {
        id: 'whiteBackground',
        beforeDraw: (c: Chart) => {
          c.ctx.save();
          c.ctx.fillStyle = '#ffffff';
          c.ctx.fillRect(0, 0, c.width, c.height);
          c.ctx.restore();
        },
      },
    ],
  });
  try {
    return canvas.toBuffer('image/png');
  } finally {
    // Destroying the chart clears the canvas: after the PNG is taken.
    chart.destroy();
  }
}

export const BAR_COLOUR = '#1f77b4';
export const BEST_COLOUR = '#d62728';

/** Test accuracy per run, as bars (the best by validation accuracy in red; none without a test split). */
export function accuracyChart(runs: LoadedRun[], title = 'test accuracy per run'): Buffer {
  const rows = runTable(runs);
  const best = bestRun(rows);
  return render({
    type: 'bar',
    data: {
      labels: rows.map((r) => r.run),
      datasets: [
        {
          label: 'test accuracy (%)',
          data: rows.map((r) =>
            Number.isFinite(r.testAccuracy) ? Math.round(r.testAccuracy * 1000) / 10 : null,
          ),
          backgroundColor: rows.map((r) => (r === best ? BEST_COLOUR : BAR_COLOUR)),
        },
      ],
    },
    options: {
      plugins: { title: { display: true, text: title, font: TITLE_FONT }, legend: { display: false } },
      scales: { y: { min: 0, max: 100, title: { display: true, text: 'accuracy (%)' } } },
    },
  });
}

/** The per-epoch metrics a curve can show. */
export type CurveMetric = 'trainLoss' | 'trainAccuracy' | 'validationLoss' | 'validationAccuracy';

/** One line per run: a metric over the epochs (accuracies in percent). */
export function curvesChart(runs: LoadedRun[], metric: CurveMetric = 'validationAccuracy'): Buffer {
  const isAccuracy = metric.endsWith('Accuracy');
  const epochs = Math.max(1, ...runs.map((r) => r.metrics.history.length));
  const label = metric.replace(/[A-Z]/g, (c) => ' ' + c.toLowerCase()) + (isAccuracy ? ' (%)' : '');
  return render({
    type: 'line',
    data: {
      labels: Array.from({ length: epochs }, (_, i) => String(i + 1)),
      datasets: runs.map((r, i) => ({
        label: r.manifest.run,
        data: r.metrics.history.map((h) => (isAccuracy ? h[metric] * 100 : h[metric])),
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
      })),
    },
    options: {
      plugins: { title: { display: true, text: `${label} per epoch`, font: TITLE_FONT } },
      scales: {
        x: { title: { display: true, text: 'epoch' } },
        y: {
          ...(isAccuracy ? { min: 0, max: 100 } : { beginAtZero: true }),
          title: { display: true, text: label },
        },
      },
    },
  });
}
