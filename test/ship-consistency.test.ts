// The Dockerfiles, the workflows and the CLI's flags agree: a flag renamed, a default or a choice changed
// in one place and not the others fails here.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flagSpecs, type FlagSpec } from '../src/config.js';
import {
  checkCliInvocations,
  checkDockerfile,
  checkImageMetadata,
  checkDockerignore,
  checkTrainingWorkflow,
  parseDockerfile,
  parseWorkflow,
  readRepoFile,
  REPO,
} from './helpers/ship.js';

const specs = flagSpecs();
const pkg = JSON.parse(readRepoFile('package.json')) as {
  version: string;
  bin: Record<string, string>;
  scripts: Record<string, string>;
};
const bins = Object.keys(pkg.bin);
const metadata = JSON.parse(readRepoFile('data/metadata.json')) as unknown;
const training = readRepoFile('.github/workflows/training.yml');
const ci = readRepoFile('.github/workflows/ci.yml');
const DOCKERFILES = ['docker/Dockerfile', 'docker/Dockerfile.gpu'];

/** The schema's flags with one of them changed, as if renamed or redefined in src/config.ts only. */
function specsWith(key: string, change: Partial<FlagSpec>): FlagSpec[] {
  return specs.map((spec) => (spec.key === key ? { ...spec, ...change } : spec));
}

describe('training workflow and CLI flags', () => {
  it('agree', () => {
    expect(checkTrainingWorkflow(training, specs, metadata)).toEqual([]);
  });

  it('has an input for each flag the issue asks for', () => {
    const inputs = Object.keys(parseWorkflow(training).on?.workflow_dispatch?.inputs ?? {});
    expect(inputs.sort()).toEqual(
      [
        'experiment_name',
        'run_name',
        'dataset',
        'dataset_folder',
        'model',
        'epochs',
        'batch_size',
        'learning_rate',
        'momentum',
        'seed',
        'pretrained_model',
        'device',
      ].sort(),
    );
  });

  it('fails when a flag is renamed in the schema only', () => {
    const problems = checkTrainingWorkflow(
      training,
      specsWith('learningRate', { key: 'lr', flag: 'lr' }),
      metadata,
    );
    expect(problems).toContain('input learning_rate: the CLI has no flag --learning-rate');
    expect(problems).toContain('the workflow passes --learning-rate, which the CLI does not have');
  });

  it('fails when a flag is renamed in the workflow only', () => {
    const renamed = training.replace('--batch-size "$BATCH_SIZE"', '--batch-sz "$BATCH_SIZE"');
    expect(checkTrainingWorkflow(renamed, specs, metadata)).toEqual([
      'the workflow passes --batch-sz, which the CLI does not have',
      '--batch-sz is given input batch_size (whose flag is --batch-size)',
    ]);
  });

  it('fails when an input is renamed and still passed to the old flag', () => {
    const renamed = training
      .replace(/^ {6}batch_size:$/m, '      images_per_step:')
      .replace('${{ inputs.batch_size }}', '${{ inputs.images_per_step }}');
    const problems = checkTrainingWorkflow(renamed, specs, metadata);
    expect(problems).toContain('input images_per_step: the CLI has no flag --images-per-step');
    expect(problems).toContain(
      '--batch-size is given input images_per_step (whose flag is --images-per-step)',
    );
  });

  it('fails when an input is not passed to the container', () => {
    const dropped = training.replace(/^ +--seed "\$SEED"\n/m, '');
    expect(checkTrainingWorkflow(dropped, specs, metadata)).toEqual([
      'input seed is not passed to the container',
    ]);
  });

  it('fails when defaults or choices drift from the schema', () => {
    expect(checkTrainingWorkflow(training, specsWith('epochs', { defaultValue: 10 }), metadata)).toEqual([
      'input epochs (--epochs): default "8", the CLI\'s is 10',
    ]);
    expect(
      checkTrainingWorkflow(training, specsWith('model', { choices: ['vgg', 'resnet'] }), metadata),
    ).toEqual(expect.arrayContaining(['input model (--model): option net is not one of vgg, resnet']));
    expect(
      checkTrainingWorkflow(
        training,
        specsWith('device', { choices: ['auto', 'cpu', 'gpu', 'tpu'] }),
        metadata,
      ),
    ).toEqual(["input device (--device): options auto, cpu, gpu differ from the CLI's auto, cpu, gpu, tpu"]);
    expect(
      checkTrainingWorkflow(training.replace(/^ {10}- synthetic$/m, '          - imagenet'), specs, metadata),
    ).toEqual(['input dataset (--dataset): option imagenet is not one of cifar10, image-folder, synthetic']);
  });

  it('fails when an input or a secret is pasted into a script', () => {
    const pasted = training.replace('--run-name "$RUN_NAME"', '--run-name "${{ inputs.run_name }}"');
    expect(checkTrainingWorkflow(pasted, specs, metadata)).toEqual(
      expect.arrayContaining(['step "Train": an input or secret is pasted into its script']),
    );
    const echoed = training.replace('mkdir -p experiments data', 'echo "key: $WANDB_API_KEY"');
    expect(checkTrainingWorkflow(echoed, specs, metadata)).toContain('step "Train": could print the W&B key');
  });

  it("turns W&B tracking on when the repository has the key, with the CLI's switch", () => {
    expect(training).toContain('if [ -n "$WANDB_API_KEY" ]; then args+=(--wandb); fi');
    expect(
      checkTrainingWorkflow(training, specsWith('wandb', { key: 'track', flag: 'track' }), metadata),
    ).toEqual(['the workflow passes --wandb, which the CLI does not have']);
  });

  it('fails when the dataset cache is not keyed on the checksum in data/metadata.json', () => {
    const wrong = training.replace('.cifar10.md5', '.cifar10.sha256');
    expect(checkTrainingWorkflow(wrong, specs, metadata)).toEqual([
      'data/metadata.json.cifar10.sha256 is not an MD5 (undefined)',
    ]);
  });
});

describe('image-classifier-trainer commands in the workflows', () => {
  it('use flags the CLI has', () => {
    expect(checkCliInvocations(ci, specs)).toEqual([]);
    expect(checkCliInvocations(training, specs)).toEqual([]);
    // The CI smoke test does run the trainer.
    expect(ci).toMatch(/image-classifier-trainer" --experiment-name smoke/);
  });

  it('fail on a flag the CLI does not have', () => {
    const wrong = ci.replace('--batch-size 64', '--batchsize 64');
    expect(checkCliInvocations(wrong, specs).length).toBeGreaterThan(0);
  });
});

describe('Dockerfiles', () => {
  for (const file of DOCKERFILES) {
    it(`${file}: entry point, install, user and volumes agree with the package and the CLI`, () => {
      expect(checkDockerfile(readRepoFile(file), specs, bins)).toEqual([]);
    });

    it(`${file}: .dockerignore lets through exactly what it copies`, () => {
      expect(checkDockerignore(readRepoFile('.dockerignore'), readRepoFile(file))).toEqual([]);
    });
  }

  for (const file of DOCKERFILES)
    it(`${file}: OCI labels, EXPOSE 8080 and a HEALTHCHECK on /healthz`, () => {
      expect(checkImageMetadata(readRepoFile(file), pkg.version)).toEqual([]);
    });

  it('the HEALTHCHECK asks /healthz of a server, and passes a training container', async () => {
    const healthcheck = parseDockerfile(readRepoFile('docker/Dockerfile')).instructions.find(
      (i) => i.keyword === 'HEALTHCHECK',
    )!;
    const words = JSON.parse(/\bCMD\s+(\[.*\])\s*$/.exec(healthcheck.args)![1]!) as string[];
    const dir = mkdtempSync(join(tmpdir(), 'healthcheck-'));
    const cmdline = join(dir, 'cmdline');
    const script = words[2]!.replace('/proc/1/cmdline', cmdline);
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? healthy : 404;
      res.end();
    });
    let healthy = 200;
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as AddressInfo).port;
    const check = (args: string[]) => {
      writeFileSync(cmdline, ['node', '/usr/local/bin/image-classifier-trainer', ...args, ''].join('\0'));
      return new Promise<number>((done) =>
        execFile('node', ['-e', script], (error) => done(error ? Number(error.code ?? 1) : 0)),
      );
    };
    try {
      expect(await check(['serve', 'baseline/run-1', '--port', String(port)])).toBe(0);
      healthy = 503;
      expect(await check(['serve', 'baseline/run-1', '--port', String(port)])).toBe(1);
      expect(await check(['--experiment-name', 'serve', '--run-name', 'r'])).toBe(0);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('both images are a current Node LTS; the GPU one with WebGPU on Vulkan', () => {
    expect(parseDockerfile(readRepoFile('docker/Dockerfile')).from).toEqual(['node:24-bookworm-slim']);
    const text = readRepoFile('docker/Dockerfile.gpu');
    expect(parseDockerfile(text).from).toEqual(['node:24-bookworm-slim']);
    expect(text).toMatch(/install-package\.sh "\$1" \S+ \/usr\/local webgpu;/);
    // What Dawn needs to find NVIDIA's Vulkan driver (issue 13: "Found no drivers" without libglvnd).
    expect(text).toMatch(/apt-get install [^\n]*libvulkan1 libglvnd0/);
    expect(text).toContain('NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics');
    expect(text).toContain('VK_DRIVER_FILES=/usr/share/vulkan/icd.d/nvidia_icd.json');
  });

  it('fails when the entry point, the working directory or the CLI defaults drift', () => {
    const text = readRepoFile('docker/Dockerfile');
    expect(checkDockerfile(text.replace('["image-classifier-trainer"]', '["trainer"]'), specs, bins)).toEqual(
      ['ENTRYPOINT ["trainer"] is not the package\'s bin (image-classifier-trainer)'],
    );
    expect(checkDockerfile(text.replace(/^WORKDIR \/$/m, 'WORKDIR /app'), specs, bins)).toEqual([
      '--experiments-folder defaults to /app/experiments in the image, which is not a VOLUME (/experiments, /data)',
      '--data-folder defaults to /app/data in the image, which is not a VOLUME (/experiments, /data)',
    ]);
    expect(checkDockerfile(text, specsWith('experimentsFolder', { defaultValue: './runs' }), bins)).toEqual([
      '--experiments-folder defaults to /runs in the image, which is not a VOLUME (/experiments, /data)',
    ]);
    expect(checkDockerfile(text.replace(/^USER node$/m, 'USER root'), specs, bins)).toEqual(['runs as root']);
  });

  it('a COPY that .dockerignore excludes fails', () => {
    const text = readRepoFile('docker/Dockerfile').replace(
      'package-lock.json docker/',
      'package-lock.json README.md docker/',
    );
    expect(checkDockerignore(readRepoFile('.dockerignore'), text)).toEqual([
      'COPY README.md: excluded by .dockerignore',
    ]);
  });
});

describe('docker:build', () => {
  it('packs, then builds either Dockerfile', () => {
    expect(pkg.scripts['docker:build']).toBe('bash scripts/docker-build.sh');
    const script = readRepoFile('scripts/docker-build.sh');
    expect(script.indexOf('npm pack')).toBeGreaterThan(0);
    expect(script.indexOf('docker build')).toBeGreaterThan(script.indexOf('npm pack'));
    for (const file of DOCKERFILES) {
      expect(script).toContain(file);
      expect(existsSync(`${REPO}/${file}`)).toBe(true);
    }
  });

  it('the shell scripts parse', () => {
    execFileSync('bash', ['-n', 'scripts/docker-build.sh'], { cwd: REPO });
    execFileSync('sh', ['-n', 'docker/install-package.sh'], { cwd: REPO });
  });
});
