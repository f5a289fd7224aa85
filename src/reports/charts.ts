// The charts of a run and of an experiment: metrics.png, curves.png, comparison.png, the confusion matrix.
import { createCanvas } from '@napi-rs/canvas';
import type { Chart } from 'chart.js';
import {
  barLabels,
  draw,
  fittedPercentRange,
  HEIGHT,
  messageChart,
  niceStep,
  render,
  titledCanvas,
  titleFont,
  WIDTH,
} from './chart-canvas.js';

const percent = (v: number) => Math.round(v * 1000) / 10;

/** metrics.png: test accuracy per class and in total, as the ancestor drew it (percent, labelled bars). */
export function renderAccuracyChart(
  title: string,
  classNames: string[],
  perClass: number[],
  total: number,
): Buffer {
  // No test images: no accuracy to draw (the bars would read as 0%).
  if (!Number.isFinite(total)) {
    return messageChart(title, 'no test images (the data has no test split): no test accuracy to show');
  }
  const labels = [...classNames, 'total'];
  const values = [...perClass, total].map(percent);
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
    plugins: [barLabels((v) => v.toFixed(1))],
  });
}

export interface CurvePoint {
  epoch: number;
  trainLoss: number;
  validationLoss: number;
  validationAccuracy: number;
  trainAccuracy?: number;
}

/**
 * Where the loss axis ends: at the largest value, unless a few values are far above the rest (a
 * first epoch's spike flattens every other point to the bottom). Then the axis ends a little above
 * the largest value within 3x the median, and the points above are drawn on its edge, marked.
 */
function lossAxisMax(values: number[]): { max: number; clipped: boolean } {
  const finite = values.filter((v) => Number.isFinite(v) && v >= 0).sort((a, b) => a - b);
  if (finite.length === 0) return { max: 1, clipped: false };
  const largest = finite[finite.length - 1]!;
  const median = finite[Math.floor((finite.length - 1) / 2)]!;
  const limit = 3 * median;
  if (finite.length < 3 || median <= 0 || largest <= limit)
    return { max: largest * 1.05 || 1, clipped: false };
  const kept = finite.filter((v) => v <= limit);
  const top = kept[kept.length - 1]!;
  const step = niceStep(top, 4);
  return { max: Math.ceil((top * 1.1) / step) * step, clipped: true };
}

/**
 * curves.png: loss (left axis) and accuracy (right axis) per epoch, training and validation
 * (a split keeps its colour; accuracy is dashed).
 */
export function renderCurves(title: string, history: CurvePoint[]): Buffer {
  const labels = history.map((h) => String(h.epoch));
  const losses = history.flatMap((h) => [h.trainLoss, h.validationLoss]);
  const axis = lossAxisMax(losses);
  const clip = (v: number) => (axis.clipped && v > axis.max ? axis.max : v);
  const marks = (values: number[]) => ({
    pointStyle: values.map((v) => (axis.clipped && v > axis.max ? 'triangle' : 'circle')),
    pointRadius: values.map((v) => (axis.clipped && v > axis.max ? 8 : 3)),
    // A marker on the cut edge is drawn whole, not half hidden by the chart area.
    clip: false as const,
  });
  const trainLoss = history.map((h) => h.trainLoss);
  const validationLoss = history.map((h) => h.validationLoss);
  const hasTrainAccuracy = history.some((h) => h.trainAccuracy !== undefined);
  return render({
    type: 'line',
    data: {
      labels,
      datasets: [
        {
          label: 'train loss',
          data: trainLoss.map(clip),
          borderColor: '#1f77b4',
          backgroundColor: '#1f77b4',
          yAxisID: 'loss',
          ...marks(trainLoss),
        },
        {
          label: 'validation loss',
          data: validationLoss.map(clip),
          borderColor: '#ff7f0e',
          backgroundColor: '#ff7f0e',
          yAxisID: 'loss',
          ...marks(validationLoss),
        },
        ...(hasTrainAccuracy
          ? [
              {
                label: 'train accuracy (%)',
                data: history.map((h) => (h.trainAccuracy === undefined ? null : h.trainAccuracy * 100)),
                borderColor: '#1f77b4',
                backgroundColor: '#1f77b4',
                borderDash: [6, 4],
                yAxisID: 'accuracy',
              },
            ]
          : []),
        {
          label: 'validation accuracy (%)',
          data: history.map((h) => h.validationAccuracy * 100),
          borderColor: '#ff7f0e',
          backgroundColor: '#ff7f0e',
          borderDash: [6, 4],
          yAxisID: 'accuracy',
        },
      ],
    },
    options: {
      plugins: { title: { display: true, text: title, font: titleFont } },
      scales: {
        x: { title: { display: true, text: 'epoch' } },
        loss: {
          type: 'linear',
          position: 'left',
          min: 0,
          max: axis.max,
          title: {
            display: true,
            text: axis.clipped ? `loss (axis cut at ${axis.max}: larger values marked ▲)` : 'loss',
          },
        },
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
    plugins: [
      {
        // The true value of each point drawn on the cut edge of the loss axis.
        id: 'clippedValues',
        afterDatasetsDraw(chart: Chart) {
          if (!axis.clipped) return;
          const { ctx } = chart;
          ctx.save();
          ctx.fillStyle = '#222';
          ctx.font = '12px sans-serif';
          ctx.textAlign = 'left';
          [trainLoss, validationLoss].forEach((values, d) => {
            chart.getDatasetMeta(d).data.forEach((point, i) => {
              if (values[i]! > axis.max)
                ctx.fillText(`${values[i]!.toFixed(2)} ▲`, point.x + 10, point.y + 16);
            });
          });
          ctx.restore();
        },
      },
    ],
  });
}

export interface ComparedRun {
  name: string;
  /** Test accuracy (0-1), or null when the run has none (interrupted, or no test split). */
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

/**
 * comparison.png: validation and test accuracy per run (labelled bars on an axis fitted to them;
 * the best run, by validation accuracy as `runs` and `sweep` pick it, named in the title) above
 * validation accuracy per epoch (one line per run, same axis fitting).
 */
export function renderComparison(title: string, runs: ComparedRun[], best: string | null): Buffer {
  const canvas = createCanvas(WIDTH, 2 * HEIGHT);
  const ctx = canvas.getContext('2d');
  // JSON has null for a missing test accuracy; NaN (no test split) is missing too.
  const known = (v: number | null | undefined) =>
    v === null || v === undefined || !Number.isFinite(v) ? null : v;
  const validation = runs.map((r) => {
    const last = known(r.history[r.history.length - 1]?.validationAccuracy);
    return last === null ? null : percent(last);
  });
  const test = runs.map((r) => {
    const value = known(r.testAccuracy);
    return value === null ? null : percent(value);
  });
  const barRange = fittedPercentRange([...validation, ...test]);
  const fromZero = barRange.min === 0;
  draw(
    {
      type: 'bar',
      data: {
        labels: runs.map((r) => (r.name === best ? `${r.name} (best)` : r.name)),
        datasets: [
          { label: 'validation accuracy, last epoch (%)', data: validation, backgroundColor: '#ff7f0e' },
          { label: 'test accuracy (%)', data: test, backgroundColor: '#1f77b4' },
        ],
      },
      options: {
        plugins: {
          title: {
            display: true,
            text: `${title}: accuracy per run (%)${best ? `, best validation accuracy: ${best}` : ''}`,
            font: titleFont,
          },
          legend: { display: true, position: 'bottom' },
        },
        scales: {
          y: {
            ...barRange,
            title: {
              display: true,
              text: fromZero ? 'accuracy (%)' : `accuracy (%), axis from ${barRange.min}`,
            },
          },
        },
      },
      plugins: [barLabels((v) => v.toFixed(1))],
    },
    (bars) => ctx.drawImage(bars, 0, 0),
  );
  const epochs = Math.max(1, ...runs.map((r) => r.history.length));
  const curveRange = fittedPercentRange(
    runs.flatMap((r) => r.history.map((h) => h.validationAccuracy * 100)),
  );
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
          y: { ...curveRange, title: { display: true, text: 'accuracy (%)' } },
        },
      },
    },
    (curves) => ctx.drawImage(curves, 0, HEIGHT),
  );
  return canvas.toBuffer('image/png');
}

/**
 * evaluation-<name>.png: the confusion matrix (rows: true class, columns: predicted; each cell's
 * count, shaded by its share of the row) with each class's accuracy and image count beside its row.
 */
export function renderConfusionChart(title: string, classNames: string[], confusion: number[][]): Buffer {
  const k = classNames.length;
  const font = '13px sans-serif';
  const measure = createCanvas(1, 1).getContext('2d');
  measure.font = font;
  const labelWidth = Math.ceil(Math.max(60, ...classNames.map((c) => measure.measureText(c).width))) + 16;
  // Up to ~30 classes every cell holds its count; beyond, cells shrink and only non-zero counts are
  // written (in a smaller font), so 100 classes still fit on a screen and the confusions stand out.
  const many = k > 30;
  const cell = many ? 22 : Math.max(28, Math.min(64, Math.floor(720 / Math.max(1, k))));
  const cellFont = many ? '9px sans-serif' : font;
  const top = 150;
  const left = labelWidth + 40;
  const side = 150;
  const width = Math.max(WIDTH, left + k * cell + side + 20);
  const height = top + k * cell + 60;
  const { canvas, ctx } = titledCanvas(width, height, title, 30);
  ctx.font = font;
  ctx.fillText("predicted class (colour: share of the true class's images)", left + (k * cell) / 2, 62);
  ctx.save();
  ctx.translate(16, top + (k * cell) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('true class', 0, 0);
  ctx.restore();
  ctx.fillText('accuracy (images)', left + k * cell + side / 2, top - 12);
  for (let j = 0; j < k; j++) {
    ctx.save();
    ctx.translate(left + j * cell + cell / 2, top - 8);
    ctx.rotate(k > 8 ? -Math.PI / 4 : 0);
    ctx.textAlign = k > 8 ? 'left' : 'center';
    ctx.fillText(classNames[j]!, 0, 0);
    ctx.restore();
  }
  for (let i = 0; i < k; i++) {
    const row = confusion[i] ?? [];
    const total = row.reduce((a, b) => a + b, 0);
    const y = top + i * cell;
    ctx.fillStyle = '#222';
    ctx.textAlign = 'right';
    ctx.fillText(classNames[i]!, left - 8, y + cell / 2 + 4);
    for (let j = 0; j < k; j++) {
      const count = row[j] ?? 0;
      const share = total === 0 ? 0 : count / total;
      // Blue for the diagonal (right), red off it (confusions); the deeper, the larger the share.
      const [r, g, b] = i === j ? [31, 119, 180] : [214, 39, 40];
      const mix = (c: number) => Math.round(255 - (255 - c) * share);
      ctx.fillStyle = `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
      ctx.fillRect(left + j * cell, y, cell, cell);
      ctx.strokeStyle = '#dddddd';
      ctx.strokeRect(left + j * cell + 0.5, y + 0.5, cell, cell);
      ctx.fillStyle = share > 0.55 ? '#ffffff' : '#222';
      ctx.textAlign = 'center';
      ctx.font = cellFont;
      if (!many || count > 0) ctx.fillText(String(count), left + j * cell + cell / 2, y + cell / 2 + 4);
      ctx.font = font;
    }
    ctx.fillStyle = '#222';
    ctx.textAlign = 'center';
    const accuracy = total === 0 ? 'no images' : `${((row[i]! / total) * 100).toFixed(1)}% (${total})`;
    ctx.fillText(accuracy, left + k * cell + side / 2, y + cell / 2 + 4);
  }
  return canvas.toBuffer('image/png');
}
