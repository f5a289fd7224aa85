// Resuming an interrupted run: its configuration comes from the checkpoint, its data must be the
// same, its weights are restored exactly; and the command that resumes it.
import { flagName, parseRunConfig, type RunConfig, type RunConfigInput } from '../config.js';
import { ConfigError, PROGRAM } from '../errors.js';
import { shellWord } from '../runs/manifest.js';

/**
 * Keys that name a run, say where things go or how it is watched, rather than what is trained: a
 * resumed run may set them anew (the thread count does not change the bits either).
 */
export const LOCATION_KEYS: ReadonlySet<string> = new Set([
  'experimentName',
  'runName',
  'experimentsFolder',
  'dataFolder',
  // Where the data comes from (its checksums are checked on resume); the checkpoint keeps it redacted.
  'downloadUrl',
  'threads',
  'wandb',
  'wandbProject',
  'wandbEntity',
]);

/**
 * The configuration of a resumed run: the checkpoint's, with the names and folders of this call.
 * Other options that the caller set and that differ from the checkpoint's are refused.
 */
export function resumedConfig(input: RunConfigInput, named: RunConfig, saved: RunConfig): RunConfig {
  const given = input as Record<string, unknown>;
  const differing = Object.keys(given).filter(
    (key) =>
      !LOCATION_KEYS.has(key) &&
      given[key] !== undefined &&
      JSON.stringify((named as Record<string, unknown>)[key]) !==
        JSON.stringify((saved as Record<string, unknown>)[key]),
  );
  if (differing.length > 0) {
    const key = differing[0]!;
    throw new ConfigError(
      `--resume continues the run as it was configured: --${flagName(key)} is ${JSON.stringify((saved as Record<string, unknown>)[key])} in its checkpoint (got ${JSON.stringify(given[key])})`,
    );
  }
  // Names and folders always come from this call; the other such keys only when given.
  const resumed: Record<string, unknown> = {
    ...saved,
    experimentName: named.experimentName,
    runName: named.runName,
    experimentsFolder: named.experimentsFolder,
    dataFolder: named.dataFolder,
  };
  for (const key of LOCATION_KEYS) {
    if (given[key] !== undefined) resumed[key] = (named as Record<string, unknown>)[key];
  }
  return resumed as RunConfig;
}

export function assertSameData(recorded: Record<string, string>, now: Record<string, string>): void {
  const changed = Object.keys(recorded).filter((k) => recorded[k] !== now[k]);
  if (changed.length > 0) {
    throw new ConfigError(
      `--resume: the data changed since the run started (${changed.join(', ')} checksum differs); it cannot continue on other data`,
    );
  }
}

export function resumeCommandFor(config: RunConfig): string {
  const words = [
    PROGRAM,
    `--${flagName('experimentName')}`,
    config.experimentName,
    `--${flagName('runName')}`,
    config.runName,
  ];
  const defaults = parseRunConfig({ experimentName: 'x', runName: 'x' });
  for (const key of ['experimentsFolder', 'dataFolder'] as const) {
    if (config[key] !== defaults[key]) words.push(`--${flagName(key)}`, config[key]);
  }
  words.push('--resume');
  return words.map(shellWord).join(' ');
}
