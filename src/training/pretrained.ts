// --pretrained-model: start from the weights of an earlier run (or any model.json of the same model).
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import { loadModelFile, MODEL_FILE, WEIGHTS_FILE } from '../models/io.js';
import { RUN_FILES } from '../runs/layout.js';
import type { Manifest } from '../runs/manifest.js';
import { sha256File } from '../runs/manifest.js';

/** `--pretrained-model <experiment>/<run>` (or a model folder, or a model.json), relative to the experiments folder. */
export function resolvePretrained(config: RunConfig): string {
  const given = config.pretrainedModel!;
  const base = resolve(config.experimentsFolder, given);
  const candidates = [join(base, RUN_FILES.modelJson), join(base, MODEL_FILE), base];
  const found = candidates.find((p) => p.endsWith('.json') && existsSync(p));
  if (!found) {
    throw new ConfigError(
      `--pretrained-model ${given}: no model found at ${base} (expected <experiment>/<run> under ${config.experimentsFolder})`,
    );
  }
  return found;
}

export async function loadPretrainedWeights(
  model: tf.LayersModel,
  modelJsonPath: string,
  config: RunConfig,
): Promise<NonNullable<Manifest['pretrained']>> {
  const given = config.pretrainedModel!;
  let source: tf.LayersModel;
  try {
    source = await loadModelFile(modelJsonPath);
  } catch (error) {
    throw new ConfigError(
      `--pretrained-model ${given}: cannot load ${modelJsonPath} (${(error as Error).message.split('\n')[0]})`,
    );
  }
  try {
    if (source.name !== model.name) {
      throw new ConfigError(
        `--pretrained-model ${given} is a '${source.name}' model, but --model is '${config.model}'`,
      );
    }
    const from = source.getWeights();
    const to = model.getWeights();
    const mismatch = from.length !== to.length || from.some((w, i) => w.shape.join() !== to[i]!.shape.join());
    if (mismatch) {
      throw new ConfigError(
        `--pretrained-model ${given} has other layer shapes than this '${config.model}' (different number of classes?)`,
      );
    }
    model.setWeights(from);
  } finally {
    source.dispose();
  }
  const weightsFile = join(modelJsonPath, '..', WEIGHTS_FILE);
  const runFolder = modelJsonPath.endsWith(join(RUN_FILES.modelJson))
    ? resolve(modelJsonPath, '..', '..')
    : null;
  return {
    path: given,
    run: runFolder ? relative(resolve(config.experimentsFolder), runFolder) : null,
    weightsSha256: existsSync(weightsFile) ? await sha256File(weightsFile) : '',
  };
}
