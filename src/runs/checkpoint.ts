// Checkpoints: everything needed to continue a run exactly where it stopped, in `checkpoint/` of the
// run's temporary folder. Written at the end of every epoch and when training is interrupted;
// removed when the run completes. A new checkpoint is written beside the old one and swapped in by
// renames, so a failed write (a full disk) or a kill at any moment leaves the previous one readable. Tensors are stored as raw float32 so restoring them gives the
// same bits, and the loop state (epoch, step, image order, RNG state, running sums) is complete,
// so a resumed run ends bit-identical to one that was never interrupted.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import { redactConfig } from '../util/redact.js';
import type { EpochMetrics } from './metrics.js';
import { CHECKPOINT_FOLDER } from './layout.js';

/** The checkpoint being written, and the one it replaces while the two are swapped. */
const NEW_DIR = `${CHECKPOINT_FOLDER}.tmp`;
const OLD_DIR = `${CHECKPOINT_FOLDER}.old`;
const STATE_FILE = 'state.json';
const WEIGHTS_FILE = 'weights.bin';
const MOMENTUM_FILE = 'momentum.bin';
const ORDER_FILE = 'order.bin';
const BEST_FILE = 'best.bin';

/** Where the training loop is: enough to continue it. */
export interface LoopState {
  /** The epoch in progress (1-based); when `step` equals the steps per epoch, it is finished. */
  epoch: number;
  /** Steps done in `epoch`. */
  step: number;
  /** Image order of `epoch` (already shuffled for it). */
  order: Int32Array;
  /** The training RNG's state after the last step done. */
  randomState: number;
  /** Completed epochs. */
  history: EpochMetrics[];
  /** Running sums of `epoch` so far. */
  sums: { lossSum: number; correct: number; seen: number; seconds: number; learningRate: number };
  /** The best epoch so far by --early-stopping-metric, and its value (null before the first epoch ends). */
  best?: { epoch: number; value: number } | null;
  /** With --save-best: all model weights at the end of the best epoch (written as best.bin). */
  bestWeights?: Float32Array[];
}

export interface CheckpointMeta {
  schemaVersion: 1;
  /** Why it was written. */
  reason: 'epoch-end' | 'interrupted';
  savedAt: string;
  /** When the run first started (kept across resumes). */
  startedAt: string;
  config: RunConfig;
  /** Dataset checksums at the start: a resume refuses other data. */
  dataChecksums: Record<string, string>;
  /** Resumes so far, oldest first. */
  resumes: Array<{ at: string; epoch: number; step: number }>;
}

export interface Checkpoint extends CheckpointMeta {
  state: LoopState;
  /** All model weights (trainable and not, e.g. batch-norm statistics), in `model.weights` order. */
  weights: Float32Array[];
  /** The optimiser's momentum buffers, in trainable-variable order. */
  momentum: Float32Array[];
}

interface StateFile extends CheckpointMeta {
  state: Omit<LoopState, 'order' | 'bestWeights'>;
  /** Float counts of the tensors in weights.bin and momentum.bin, in order. */
  weightSizes: number[];
  momentumSizes: number[];
  /** Whether best.bin holds the best epoch's weights (sizes: weightSizes). */
  hasBestWeights?: boolean;
}

function concat(arrays: Float32Array[]): Buffer {
  return Buffer.concat(arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
}

function split(buffer: Buffer, sizes: number[], file: string): Float32Array[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (buffer.byteLength !== total * 4) {
    throw new Error(`checkpoint ${file} holds ${buffer.byteLength} bytes, expected ${total * 4}`);
  }
  // Copy into an aligned buffer: Buffers from readFile may sit at any offset of a shared pool.
  const all = new Float32Array(total);
  new Uint8Array(all.buffer).set(buffer);
  let offset = 0;
  return sizes.map((n) => all.subarray(offset, (offset += n)));
}

/** Reads tensors' values (copies, as float32). */
export async function tensorValues(tensors: readonly tf.Tensor[]): Promise<Float32Array[]> {
  return Promise.all(tensors.map(async (t) => Float32Array.from(await t.data())));
}

/**
 * Writes `checkpoint/` in `runTmpPath`, replacing the previous one only once the new one is complete.
 * When the write fails (a full disk), what was written is removed and the previous checkpoint stays.
 */
export async function saveCheckpoint(runTmpPath: string, checkpoint: Checkpoint): Promise<void> {
  const final = join(runTmpPath, CHECKPOINT_FOLDER);
  const tmp = join(runTmpPath, NEW_DIR);
  const old = join(runTmpPath, OLD_DIR);
  const { state, weights, momentum, ...meta } = checkpoint;
  const { order, bestWeights, ...loop } = state;
  const stateFile: StateFile = {
    ...meta,
    // A download URL's credentials are never stored (a resume given the URL again uses that one).
    config: redactConfig(meta.config),
    state: loop,
    weightSizes: weights.map((w) => w.length),
    momentumSizes: momentum.map((m) => m.length),
    hasBestWeights: bestWeights !== undefined,
  };
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    await writeFile(join(tmp, WEIGHTS_FILE), concat(weights));
    await writeFile(join(tmp, MOMENTUM_FILE), concat(momentum));
    await writeFile(join(tmp, ORDER_FILE), Buffer.from(order.buffer, order.byteOffset, order.byteLength));
    if (bestWeights) await writeFile(join(tmp, BEST_FILE), concat(bestWeights));
    // state.json last: a checkpoint folder without it is incomplete and never read.
    await writeFile(join(tmp, STATE_FILE), JSON.stringify(stateFile, null, 2));
  } catch (error) {
    // Free what was written (on a full disk it is what the next attempt needs) and keep the old one.
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
  // Swap: at every moment either checkpoint/ or checkpoint.old/ is a complete checkpoint.
  await rm(old, { recursive: true, force: true });
  if (existsSync(final)) await rename(final, old);
  await rename(tmp, final);
  await rm(old, { recursive: true, force: true });
}

/** The folder of the newest complete checkpoint in `runTmpPath`, or null. */
function completeCheckpoint(runTmpPath: string): string | null {
  for (const name of [CHECKPOINT_FOLDER, OLD_DIR]) {
    if (existsSync(join(runTmpPath, name, STATE_FILE))) return join(runTmpPath, name);
  }
  return null;
}

export function hasCheckpoint(runTmpPath: string): boolean {
  return completeCheckpoint(runTmpPath) !== null;
}

/**
 * The checkpoint on disk in `runTmpPath`, for messages ("the checkpoint of the end of epoch 2"); null
 * when there is none. Synchronous, for signal handlers.
 */
export function describeCheckpoint(runTmpPath: string): string | null {
  const dir = completeCheckpoint(runTmpPath);
  if (dir === null) return null;
  try {
    const file = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as StateFile;
    const { epoch, step } = file.state;
    return file.reason === 'epoch-end'
      ? `the checkpoint of the end of epoch ${epoch}`
      : `the checkpoint of epoch ${epoch} after ${step} steps`;
  } catch {
    return 'a checkpoint';
  }
}

export async function loadCheckpoint(runTmpPath: string): Promise<Checkpoint> {
  const dir = completeCheckpoint(runTmpPath) ?? join(runTmpPath, CHECKPOINT_FOLDER);
  const file = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as StateFile;
  if (file.schemaVersion !== 1)
    throw new Error(`checkpoint ${dir}: unknown schema version ${file.schemaVersion}`);
  const { weightSizes, momentumSizes, hasBestWeights, state, ...meta } = file;
  const orderBytes = await readFile(join(dir, ORDER_FILE));
  const order = new Int32Array(orderBytes.byteLength / 4);
  new Uint8Array(order.buffer).set(orderBytes);
  return {
    ...meta,
    state: {
      ...state,
      order,
      ...(hasBestWeights
        ? { bestWeights: split(await readFile(join(dir, BEST_FILE)), weightSizes, BEST_FILE) }
        : {}),
    },
    weights: split(await readFile(join(dir, WEIGHTS_FILE)), weightSizes, WEIGHTS_FILE),
    momentum: split(await readFile(join(dir, MOMENTUM_FILE)), momentumSizes, MOMENTUM_FILE),
  };
}

export async function removeCheckpoint(runTmpPath: string): Promise<void> {
  for (const name of [CHECKPOINT_FOLDER, NEW_DIR, OLD_DIR]) {
    await rm(join(runTmpPath, name), { recursive: true, force: true });
  }
}
