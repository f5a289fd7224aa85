// Reading finished runs back: the manifest, the metrics and the model.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../config.js';
import { loadModelFile, MODEL_FILE } from '../models/io.js';
import type { Metrics } from '../training/train.js';
import { MANIFEST_FILE, type Manifest } from './manifest.js';

export interface LoadedRun {
  /** Absolute path of the run folder. */
  path: string;
  manifest: Manifest;
  metrics: Metrics;
  /** Loads the trained model (the caller disposes it). */
  loadModel(): Promise<tf.LayersModel>;
}

/** The folder of `run`: `<experiment>/<run>` relative to `experimentsFolder`, or a path to a run folder. */
export function findRunFolder(run: string, experimentsFolder = './experiments'): string {
  const candidates = [resolve(experimentsFolder, run), resolve(run)];
  const path = candidates.find((p) => existsSync(join(p, MANIFEST_FILE)));
  if (!path) throw new ConfigError(`no run at ${candidates[0]} (a run folder has a ${MANIFEST_FILE})`);
  return path;
}

/** A run's manifest (run.json). */
export async function readManifest(path: string): Promise<Manifest> {
  try {
    return JSON.parse(await readFile(join(path, MANIFEST_FILE), 'utf8')) as Manifest;
  } catch (error) {
    throw new ConfigError(
      `${join(path, MANIFEST_FILE)}: cannot be read (${(error as Error).message.split('\n')[0]})`,
    );
  }
}

/** `run` is `<experiment>/<run>` relative to `experimentsFolder`, or a path to a run folder. */
export async function loadRun(run: string, experimentsFolder = './experiments'): Promise<LoadedRun> {
  const path = findRunFolder(run, experimentsFolder);
  const manifest = await readManifest(path);
  const metrics = JSON.parse(await readFile(join(path, 'metrics.json'), 'utf8')) as Metrics;
  return { path, manifest, metrics, loadModel: () => loadModelFile(join(path, 'model', MODEL_FILE)) };
}
