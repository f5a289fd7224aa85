// Saving and loading tfjs LayersModels as files (model.json + weights.bin) without tfjs-node, whose
// `file://` handler is the usual way but is not installable everywhere. The format is tfjs's own, so
// `tf.loadLayersModel('file://.../model.json')` (tfjs-node) or any http loader reads it too.
import { createHash } from 'node:crypto';
import { mkdir, realpath, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs';

import { readBoundedFile } from '../util/bounded-read.js';
import { InputError, fileProblem } from '../errors.js';

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';

interface ModelJson {
  modelTopology: tf.io.ModelArtifacts['modelTopology'];
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  userDefinedMetadata?: Record<string, unknown>;
}

/**
 * Writes model.json and weights.bin into `folder`. `metadata` goes into model.json as tfjs's
 * user-defined metadata (`model.getUserDefinedMetadata()` after `tf.loadLayersModel`).
 */
export async function saveModel(
  model: tf.LayersModel,
  folder: string,
  metadata?: Record<string, unknown>,
): Promise<void> {
  await mkdir(folder, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData;
      const buffers = data === undefined ? [] : Array.isArray(data) ? data : [data];
      const weights = Buffer.concat(buffers.map((b) => Buffer.from(b)));
      const json: ModelJson = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
        ...(metadata ? { userDefinedMetadata: metadata } : {}),
      };
      await writeFile(join(folder, WEIGHTS_FILE), weights);
      await writeFile(join(folder, MODEL_FILE), JSON.stringify(json));
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          weightDataBytes: weights.length,
        },
      };
    }),
  );
}

/**
 * Writes `values` (every weight, in `model.weights` order, as float32) into `model`, bit for bit: a
 * checkpoint's, the best epoch's, the last epoch's. Refuses values of other shapes (another model).
 */
export function setWeightValues(model: tf.LayersModel, values: Float32Array[]): void {
  const weights = model.weights;
  if (values.length !== weights.length || values.some((v, i) => v.length !== weights[i]!.read().size)) {
    throw new Error('the checkpoint does not fit this model (other layer shapes)');
  }
  tf.tidy(() => weights.forEach((w, i) => w.write(tf.tensor(values[i]!, w.read().shape))));
}

/** model.json is topology and a weights manifest: tens of KB for our models; far more is not one of ours. */
const MAX_MODEL_JSON_BYTES = 64 * 2 ** 20;
/** The most one weights file may hold (a Buffer's limit is near it anyway). */
const MAX_WEIGHTS_BYTES = 2 ** 31 - 1;

export interface LoadModelFileOptions {
  /**
   * sha256 of the model's files by path relative to the model folder (e.g. `weights.bin`). When given,
   * every file read must be listed and match, or nothing is loaded.
   */
  sha256?: Record<string, string>;
  /** Where those hashes come from, for the message (e.g. the run's run.json). */
  recordedIn?: string;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A weights path of model.json, refused unless it names a file inside the model folder. */
function weightsPath(folder: string, path: string, modelJsonPath: string): string {
  const unsafe =
    typeof path !== 'string' ||
    path === '' ||
    isAbsolute(path) ||
    /^[a-z][a-z0-9+.-]*:/i.test(path) ||
    path.includes('\0') ||
    path.split(/[\\/]/).includes('..');
  const full = resolve(folder, String(path));
  const rel = relative(folder, full);
  if (unsafe || rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw new InputError(
      `${modelJsonPath} names the weights file ${JSON.stringify(path)}, outside its folder ${folder}; refusing to load it`,
    );
  }
  return full;
}

/**
 * Loads model.json (and its weight files, relative to it) from disk. Weight files must lie inside
 * model.json's folder (no `..`, absolute paths, URLs or links out of it); with `sha256`, every file
 * must match its recorded hash. Refusals are InputErrors naming the file.
 */
export async function loadModelFile(
  modelJsonPath: string,
  options: LoadModelFileOptions = {},
): Promise<tf.LayersModel> {
  const folder = dirname(resolve(modelJsonPath));
  const realFolder = await realpath(folder).catch(() => folder);
  const recordedIn = options.recordedIn ?? 'the recorded hashes';
  const read = async (file: string, maxBytes: number): Promise<Buffer> => {
    // A link inside the folder that points out of it is refused like a `..` path.
    const real = await realpath(file).catch(() => null);
    if (real !== null && !real.startsWith(realFolder + sep)) {
      throw new InputError(`${file} links outside the model folder ${folder}; refusing to load it`);
    }
    let bytes: Buffer;
    try {
      bytes = await readBoundedFile(file, maxBytes);
    } catch (error) {
      throw new InputError(`cannot read the model file ${file} (${fileProblem(error)})`);
    }
    if (options.sha256) {
      const name = relative(folder, file).split(sep).join('/');
      const expected = options.sha256[name];
      if (expected === undefined) {
        throw new InputError(`${file} is not among the model files ${recordedIn} lists; refusing to load it`);
      }
      if (sha256(bytes) !== expected) {
        throw new InputError(
          `${file} has changed since the run was written (its sha256 is not the one in ${recordedIn}); refusing to load it`,
        );
      }
    }
    return bytes;
  };
  const jsonPath = resolve(modelJsonPath);
  let json: ModelJson;
  try {
    json = JSON.parse((await read(jsonPath, MAX_MODEL_JSON_BYTES)).toString('utf8')) as ModelJson;
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw new InputError(`${jsonPath} is not valid JSON (${(error as Error).message.split('\n')[0]})`);
  }
  if (
    json === null ||
    typeof json !== 'object' ||
    !Array.isArray(json.weightsManifest) ||
    json.weightsManifest.some((g) => g === null || !Array.isArray(g.paths) || !Array.isArray(g.weights))
  ) {
    throw new InputError(`${jsonPath} is not a tfjs model.json (no weightsManifest with paths and weights)`);
  }
  // Every path is checked before any is read.
  const groups = json.weightsManifest.map((group) => ({
    weights: group.weights,
    files: group.paths.map((p) => weightsPath(folder, p, jsonPath)),
  }));
  const specs: tf.io.WeightsManifestEntry[] = [];
  const parts: Buffer[] = [];
  for (const group of groups) {
    specs.push(...group.weights);
    for (const file of group.files) parts.push(await read(file, MAX_WEIGHTS_BYTES));
  }
  const all = Buffer.concat(parts);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: specs,
      weightData,
      userDefinedMetadata: json.userDefinedMetadata,
    }),
  );
}
