// Checkpoints: everything needed to continue a run exactly where it stopped, in `checkpoint/` of the
// run's temporary folder. Written at the end of every epoch and when training is interrupted;
// removed when the run completes. Tensors are stored as raw float32 so restoring them gives the
// same bits, and the loop state (epoch, step, image order, RNG state, running sums) is complete,
// so a resumed run ends bit-identical to one that was never interrupted.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import type { EpochMetrics } from '../training/train.js';

export const CHECKPOINT_DIR = 'checkpoint';
const STATE_FILE = 'state.json';
const WEIGHTS_FILE = 'weights.bin';
const MOMENTUM_FILE = 'momentum.bin';
const ORDER_FILE = 'order.bin';

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
  state: Omit<LoopState, 'order'>;
  /** Float counts of the tensors in weights.bin and momentum.bin, in order. */
  weightSizes: number[];
  momentumSizes: number[];
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

/** Writes `checkpoint/` in `runTmpPath`, replacing the previous one only once the new one is complete. */
export async function saveCheckpoint(runTmpPath: string, checkpoint: Checkpoint): Promise<void> {
  const final = join(runTmpPath, CHECKPOINT_DIR);
  const tmp = join(runTmpPath, `${CHECKPOINT_DIR}.tmp`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  const { state, weights, momentum, ...meta } = checkpoint;
  const { order, ...loop } = state;
  const stateFile: StateFile = {
    ...meta,
    state: loop,
    weightSizes: weights.map((w) => w.length),
    momentumSizes: momentum.map((m) => m.length),
  };
  await writeFile(join(tmp, WEIGHTS_FILE), concat(weights));
  await writeFile(join(tmp, MOMENTUM_FILE), concat(momentum));
  await writeFile(join(tmp, ORDER_FILE), Buffer.from(order.buffer, order.byteOffset, order.byteLength));
  // state.json last: a checkpoint folder without it is incomplete and never read.
  await writeFile(join(tmp, STATE_FILE), JSON.stringify(stateFile, null, 2));
  await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
}

export function hasCheckpoint(runTmpPath: string): boolean {
  return existsSync(join(runTmpPath, CHECKPOINT_DIR, STATE_FILE));
}

export async function loadCheckpoint(runTmpPath: string): Promise<Checkpoint> {
  const dir = join(runTmpPath, CHECKPOINT_DIR);
  const file = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as StateFile;
  if (file.schemaVersion !== 1)
    throw new Error(`checkpoint ${dir}: unknown schema version ${file.schemaVersion}`);
  const { weightSizes, momentumSizes, state, ...meta } = file;
  const orderBytes = await readFile(join(dir, ORDER_FILE));
  const order = new Int32Array(orderBytes.byteLength / 4);
  new Uint8Array(order.buffer).set(orderBytes);
  return {
    ...meta,
    state: { ...state, order },
    weights: split(await readFile(join(dir, WEIGHTS_FILE)), weightSizes, WEIGHTS_FILE),
    momentum: split(await readFile(join(dir, MOMENTUM_FILE)), momentumSizes, MOMENTUM_FILE),
  };
}

export async function removeCheckpoint(runTmpPath: string): Promise<void> {
  await rm(join(runTmpPath, CHECKPOINT_DIR), { recursive: true, force: true });
  await rm(join(runTmpPath, `${CHECKPOINT_DIR}.tmp`), { recursive: true, force: true });
}
