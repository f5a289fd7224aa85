// Batch inference over files and folders: listed up front (paths only), then decoded and classified a
// batch at a time, the next batch decoding while the model runs on this one, and every row written as
// soon as its batch is done. Memory stays at two batches of images whatever the number of files.
import { once } from 'node:events';
import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { IMAGE_EXTENSIONS } from '../data/image-folder.js';
import { silentProgress, type ProgressFactory } from '../reports/progress.js';
import { SERVING_DEFAULTS, type PredictOptionsInput } from '../model-options.js';
import { loadModel, smoothingNote, type ClassifierModel, type Prediction } from './model.js';
import { firstLine, InputError } from '../errors.js';

export type OutputFormat = 'table' | 'json' | 'csv';

export interface FileProblem {
  file: string;
  reason: string;
}

/** `topK` (at most the number of classes is shown) and `batchSize`, as the predict command's flags. */
export interface PredictFilesOptions extends Pick<PredictOptionsInput, 'topK' | 'batchSize'> {
  /** table (default): aligned columns; json: JSON Lines, one object per image; csv: a header, then rows. */
  format?: OutputFormat;
  /** Images decoded at once (default: cores, at least 4). */
  concurrency?: number;
  /** Where rows go (default process.stdout). */
  output?: NodeJS.WritableStream;
  progress?: ProgressFactory;
  /** Called for each input that cannot be read, as soon as it is known. */
  onError?: (problem: FileProblem) => void;
}

export interface PredictFilesResult {
  /** Image files found (files named, plus images in the folders). */
  images: number;
  predicted: number;
  failed: FileProblem[];
}

/** Code-unit order, so the output order does not depend on the machine's locale. */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Why an input was skipped: it may be a file or a folder. */
function whySkipped(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or folder';
  if (code === 'EACCES') return 'permission denied';
  return firstLine(error);
}

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

/**
 * The image files of `inputs`: a file is taken as named (whatever its extension), a folder is walked
 * recursively for image files (by extension; hidden entries skipped), each folder in name order.
 */
export async function listImageFiles(
  inputs: string[],
  onError: (problem: FileProblem) => void = () => {},
): Promise<string[]> {
  const files: string[] = [];
  const seen = new Set<string>();
  const add = async (file: string) => {
    const real = await realpath(file).catch(() => path.resolve(file));
    if (seen.has(real)) return;
    seen.add(real);
    files.push(file);
  };
  // Real paths of the folders being walked, so a link back up the tree is not followed forever.
  const walk = async (dir: string, ancestors: Set<string>) => {
    const real = await realpath(dir);
    if (ancestors.has(real)) return;
    const inside = new Set(ancestors).add(real);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      onError({ file: dir, reason: whySkipped(error) });
      return;
    }
    entries.sort((a, b) => byCodeUnit(a.name, b.name));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      let kind: 'dir' | 'file' | 'other' = entry.isDirectory() ? 'dir' : entry.isFile() ? 'file' : 'other';
      if (entry.isSymbolicLink()) {
        const s = await stat(full).catch(() => null);
        kind = s?.isDirectory() ? 'dir' : s?.isFile() ? 'file' : 'other';
      }
      if (kind === 'dir') await walk(full, inside);
      else if (kind === 'file' && isImageName(entry.name)) await add(full);
    }
  };
  for (const input of inputs) {
    try {
      const s = await stat(input);
      if (s.isDirectory()) await walk(input, new Set());
      else await add(input);
    } catch (error) {
      onError({ file: input, reason: whySkipped(error) });
    }
  }
  return files;
}

/** Runs `task(0..count-1)` with at most `concurrency` in flight. */
async function promisePool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, concurrency), count) }, worker));
}

type Decoded = { file: string; image: Uint8Array } | { file: string; error: string };

async function decodeBatch(model: ClassifierModel, files: string[], concurrency: number): Promise<Decoded[]> {
  const out = new Array<Decoded>(files.length);
  await promisePool(files.length, concurrency, async (i) => {
    const file = files[i]!;
    try {
      out[i] = { file, image: await model.decode(file) };
    } catch (error) {
      out[i] = { file, error: whySkipped(error) };
    }
  });
  return out;
}

function csvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Six significant digits: plenty for a probability, and short. */
function short(p: number): string {
  return String(Number(p.toPrecision(6)));
}

function ordinal(n: number): string {
  const suffix =
    n % 10 === 1 && n % 100 !== 11
      ? 'st'
      : n % 10 === 2 && n % 100 !== 12
        ? 'nd'
        : n % 10 === 3 && n % 100 !== 13
          ? 'rd'
          : 'th';
  return `${n}${suffix}`;
}

/** The header and the row of one image, in each format. */
export function formatter(
  format: OutputFormat,
  classNames: string[],
  topK: number,
  fileWidth: number,
): { header: string | null; row: (file: string, p: Prediction) => string } {
  const k = Math.max(1, Math.min(topK, classNames.length));
  switch (format) {
    case 'json':
      return {
        header: null,
        row: (file, p) =>
          JSON.stringify({
            file,
            label: p.label,
            probability: p.probability,
            top: p.top.slice(0, k),
            probabilities: Object.fromEntries(classNames.map((c, i) => [c, p.probabilities[i]!])),
          }) + '\n',
      };
    case 'csv': {
      const columns = ['file'];
      for (let i = 1; i <= k; i++) columns.push(`label_${i}`, `probability_${i}`);
      return {
        header: columns.join(',') + '\n',
        row: (file, p) =>
          [
            csvField(file),
            ...p.top.slice(0, k).flatMap((t) => [csvField(t.label), short(t.probability)]),
          ].join(',') + '\n',
      };
    }
    case 'table': {
      const labelWidth = Math.max(...classNames.map((c) => c.length)) + 8;
      const width = Math.max(4, fileWidth);
      const headings = Array.from({ length: k }, (_, i) => (i === 0 ? 'prediction' : ordinal(i + 1)));
      return {
        header:
          ['file'.padEnd(width), ...headings.map((h) => h.padEnd(labelWidth))].join('  ').trimEnd() + '\n',
        row: (file, p) =>
          [
            file.padEnd(width),
            ...p.top
              .slice(0, k)
              .map((t) => `${t.label} ${(t.probability * 100).toFixed(1)}%`.padEnd(labelWidth)),
          ]
            .join('  ')
            .trimEnd() + '\n',
      };
    }
  }
}

/** Lists `inputs`, classifies every image and writes one row per image to `output` as it goes. */
export async function predictFiles(
  model: ClassifierModel,
  inputs: string[],
  options: PredictFilesOptions = {},
): Promise<PredictFilesResult> {
  const failed: FileProblem[] = [];
  const onError = (problem: FileProblem) => {
    failed.push(problem);
    options.onError?.(problem);
  };
  const files = await listImageFiles(inputs, onError);
  const topK = options.topK ?? SERVING_DEFAULTS.topK;
  const batchSize = Math.max(1, options.batchSize ?? SERVING_DEFAULTS.batchSize);
  const concurrency = options.concurrency ?? Math.max(4, availableParallelism());
  const output = options.output ?? process.stdout;
  // Long names would make every row wide; beyond 60 characters the columns just stop lining up.
  const fileWidth = Math.min(60, Math.max(0, ...files.map((f) => f.length)));
  const { header, row } = formatter(options.format ?? 'table', model.classNames, topK, fileWidth);

  let outputError: Error | null = null;
  const onOutputError = (error: Error) => (outputError = error);
  output.on('error', onOutputError);
  const write = async (text: string) => {
    if (outputError) throw outputError;
    if (!output.write(text)) await Promise.race([once(output, 'drain'), once(output, 'error')]);
  };

  const bar = (options.progress ?? silentProgress)('Predicting', files.length, 'images');
  // libvips' operation cache only churns when every file is new; it is process-wide, so its limits
  // are restored afterwards.
  const cacheLimits = sharp.cache();
  sharp.cache(false);
  let predicted = 0;
  let done = 0;
  try {
    if (header !== null) await write(header);
    const batches: string[][] = [];
    for (let i = 0; i < files.length; i += batchSize) batches.push(files.slice(i, i + batchSize));
    let next: Promise<Decoded[]> | null =
      batches.length > 0 ? decodeBatch(model, batches[0]!, concurrency) : null;
    for (let b = 0; next !== null; b++) {
      const current = await next;
      next = b + 1 < batches.length ? decodeBatch(model, batches[b + 1]!, concurrency) : null;
      const ok: Array<{ file: string; image: Uint8Array }> = [];
      for (const d of current) {
        if ('error' in d) onError({ file: d.file, reason: d.error });
        else ok.push(d);
      }
      const predictions = await model.classify(
        ok.map((d) => d.image),
        model.classNames.length,
      );
      await write(predictions.map((p, i) => row(ok[i]!.file, p)).join(''));
      predicted += ok.length;
      done += current.length;
      bar.update(done);
    }
  } finally {
    bar.stop();
    sharp.cache({
      memory: cacheLimits.memory.max,
      files: cacheLimits.files.max,
      items: cacheLimits.items.max,
    });
    output.off('error', onOutputError);
  }
  return { images: files.length, predicted, failed };
}

export interface PredictRunOptions
  extends PredictFilesOptions, Omit<PredictOptionsInput, 'topK' | 'batchSize'> {}

export interface PredictRunResult extends PredictFilesResult {
  /** Said once when the model's probabilities cannot reach 100% (label smoothing); null otherwise. */
  note: string | null;
}

/**
 * `predict <run> <inputs..>`: loads the run's model, classifies every image under `inputs` (rows to
 * `output`), and frees the model. Refuses (InputError) inputs that hold no image files at all.
 */
export async function predictRun(
  run: string,
  inputs: string[],
  options: PredictRunOptions = {},
): Promise<PredictRunResult> {
  const { experimentsFolder, device, backend, threads, ...predictOptions } = options;
  const model = await loadModel(run, { experimentsFolder, device, backend, threads });
  try {
    const result = await predictFiles(model, inputs, predictOptions);
    if (result.images === 0 && result.failed.length === 0) {
      throw new InputError(
        `no image files in ${inputs.join(', ')} (looked for ${IMAGE_EXTENSIONS.join(' ')})`,
      );
    }
    const note = smoothingNote(model.manifest.config.labelSmoothing, model.classNames.length);
    return { ...result, note: result.predicted > 0 ? note : null };
  } finally {
    model.dispose();
  }
}
