// Releasing: every action of every workflow pinned to a commit SHA with its version beside it; the
// release workflow publishes to npm with provenance from a tag that is package.json's version and pushes
// both Docker images to GHCR; Dependabot keeps npm, the actions and the base images current; the
// LICENSE, the CHANGELOG and package.json's metadata agree.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { allSteps, parseWorkflow, readRepoFile, type Step } from './helpers/ship.js';

const FOLDER = '.github/workflows';
const workflowFiles = readdirSync(new URL(`../${FOLDER}/`, import.meta.url))
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const pkg = JSON.parse(readRepoFile('package.json')) as Record<string, unknown> & { version: string };

/** `uses: owner/repo[/path]@<40 hex> # v1.2.3`: the action, its commit and the version in the comment. */
const PINNED = /^\s*(?:-\s+)?uses:\s+([\w.-]+\/[\w./-]+)@([0-9a-f]{40})\s+#\s+(v\d+(?:\.\d+){0,2})\s*$/;

/**
 * Every `uses:` of a workflow (steps and reusable workflows alike) is an action pinned to a full commit
 * SHA with its version in a trailing comment; a local action (./path) is the repository's own code.
 */
function checkPinnedActions(text: string, file: string): string[] {
  const problems: string[] = [];
  text.split('\n').forEach((line, index) => {
    if (!/^\s*(?:-\s+)?uses:/.test(line)) return;
    if (/uses:\s+['"]?\.\//.test(line)) return;
    if (!PINNED.test(line)) problems.push(`${file}:${index + 1}: not pinned to a commit SHA: ${line.trim()}`);
  });
  // What the YAML says, not only how the lines look (a flow mapping, a quoted value).
  const workflow = parseYaml(text) as {
    jobs?: Record<string, { uses?: string; steps?: Array<{ uses?: string }> }>;
  };
  for (const [name, job] of Object.entries(workflow.jobs ?? {}))
    for (const uses of [job.uses, ...(job.steps ?? []).map((step) => step.uses)])
      if (uses !== undefined && !uses.startsWith('./') && !/^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/.test(uses))
        problems.push(`${file}: job ${name}: ${uses} is not pinned to a commit SHA`);
  return problems;
}

function usesLines(): Array<{ file: string; action: string; sha: string; version: string }> {
  return workflowFiles.flatMap((file) =>
    readRepoFile(`${FOLDER}/${file}`)
      .split('\n')
      .map((line) => PINNED.exec(line))
      .filter((match) => match !== null)
      .map((match) => ({ file, action: match[1]!, sha: match[2]!, version: match[3]! })),
  );
}

interface Job {
  permissions?: Record<string, string>;
  needs?: string | string[];
  strategy?: { matrix?: { include?: Array<Record<string, string>> } };
  steps?: Step[];
}

const releaseText = readRepoFile(`${FOLDER}/release.yml`);
const release = parseYaml(releaseText) as {
  on?: { push?: { tags?: string[]; branches?: string[] } };
  permissions?: Record<string, string>;
  jobs: Record<string, Job>;
};

function jobWith(predicate: (step: Step) => boolean): [string, Job] {
  const found = Object.entries(release.jobs).find(([, job]) => (job.steps ?? []).some(predicate));
  if (!found) throw new Error('no such job in release.yml');
  return found;
}

describe('actions in the workflows', () => {
  it('finds the workflows, release.yml among them', () => {
    expect(workflowFiles).toEqual(
      expect.arrayContaining(['ci.yml', 'release.yml', 'sweep.yml', 'training.yml']),
    );
  });

  for (const file of workflowFiles)
    it(`${FOLDER}/${file}: every uses: is pinned to a 40-hex commit SHA with a version comment`, () => {
      const text = readRepoFile(`${FOLDER}/${file}`);
      expect(text).toMatch(/uses:/);
      expect(checkPinnedActions(text, file)).toEqual([]);
    });

  it('one action, one commit and one version across the workflows', () => {
    const byAction = new Map<string, Set<string>>();
    for (const { action, sha, version } of usesLines())
      byAction.set(action, (byAction.get(action) ?? new Set()).add(`${sha} ${version}`));
    const mixed = [...byAction].filter(([, pins]) => pins.size > 1).map(([action]) => action);
    expect(mixed).toEqual([]);
    expect([...byAction.keys()]).toEqual(expect.arrayContaining(['actions/checkout', 'actions/setup-node']));
  });

  it('fails on a tag, a branch, a short SHA or a missing version comment', () => {
    const sha = '3d3c42e5aac5ba805825da76410c181273ba90b1';
    const steps = (uses: string) => `jobs:\n  a:\n    steps:\n      - uses: ${uses}\n`;
    expect(checkPinnedActions(steps(`actions/checkout@${sha} # v7.0.1`), 'ok.yml')).toEqual([]);
    expect(checkPinnedActions(steps('./.github/actions/local'), 'local.yml')).toEqual([]);
    for (const uses of [
      'actions/checkout@v4',
      'actions/checkout@main',
      'actions/checkout@3d3c42e',
      `actions/checkout@${sha}`,
      `actions/checkout@${sha} # latest`,
      `actions/checkout@${sha.toUpperCase()} # v7.0.1`,
      'docker://alpine:3.20',
    ])
      expect(checkPinnedActions(steps(uses), 'bad.yml').length, uses).toBeGreaterThan(0);
    // A reusable workflow is pinned the same way.
    expect(
      checkPinnedActions('jobs:\n  a:\n    uses: owner/repo/.github/workflows/x.yml@v1\n', 'reuse.yml'),
    ).toHaveLength(2);
  });
});

describe('release workflow', () => {
  it('runs on a pushed tag v*, nothing else', () => {
    expect(release.on?.push?.tags).toEqual(['v*']);
    expect(release.on?.push?.branches).toBeUndefined();
    expect(Object.keys(release.on ?? {})).toEqual(['push']);
  });

  it('grants read only at the top; each job asks for what it needs', () => {
    expect(release.permissions).toEqual({ contents: 'read' });
  });

  it('publishes with --provenance from a job with id-token: write, after npm test', () => {
    const [, job] = jobWith((step) => /\bnpm publish\b/.test(step.run ?? ''));
    const steps = job.steps!;
    const publish = steps.findIndex((step) => /\bnpm publish\b/.test(step.run ?? ''));
    expect(steps[publish]!.run).toMatch(/npm publish --provenance --access public\b/);
    expect(job.permissions).toEqual({ contents: 'read', 'id-token': 'write' });
    expect(steps[publish]!.env?.NODE_AUTH_TOKEN?.replace(/\s/g, '')).toBe('${{secrets.NPM_TOKEN}}');
    const setupNode = steps.find((step) => step.uses?.startsWith('actions/setup-node@'));
    expect(setupNode?.with?.['registry-url']).toBe('https://registry.npmjs.org');
    const ci = steps.findIndex((step) => step.run === 'npm ci --no-audit --no-fund');
    const test = steps.findIndex((step) => step.run === 'npm test');
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(test).toBeGreaterThan(ci);
    expect(publish).toBeGreaterThan(test);
    // package.json says the same, so that a publish without the flag still carries provenance.
    expect(pkg.publishConfig).toEqual({ access: 'public', provenance: true });
  });

  it("refuses a tag that is not v + package.json's version, before anything is published", () => {
    const [, job] = jobWith((step) => /\bnpm publish\b/.test(step.run ?? ''));
    const steps = job.steps!;
    const check = steps.findIndex((step) => (step.run ?? '').includes("require('./package.json').version"));
    expect(check).toBeGreaterThanOrEqual(0);
    expect(steps[check]!.env?.TAG?.replace(/\s/g, '')).toBe('${{github.ref_name}}');
    expect(steps[check]!.run).toMatch(/if \[ "\$TAG" != "v\$version" \]; then[^]*?exit 1/);
    expect(check).toBeLessThan(steps.findIndex((step) => step.run === 'npm test'));
  });

  it('pushes both images, built from the packed package, to ghcr.io/<repository>', () => {
    const [name, job] = jobWith((step) => step.uses?.startsWith('docker/build-push-action@') ?? false);
    expect(job.needs).toEqual('npm');
    expect(job.permissions).toEqual({ contents: 'read', packages: 'write' });
    const include = job.strategy?.matrix?.include ?? [];
    expect(include.map((variant) => variant.dockerfile).sort()).toEqual([
      'docker/Dockerfile',
      'docker/Dockerfile.gpu',
    ]);
    expect(include.find((variant) => variant.dockerfile === 'docker/Dockerfile.gpu')?.suffix).toBe('-gpu');

    const steps = job.steps!;
    const index = (prefix: string) => steps.findIndex((step) => step.uses?.startsWith(prefix) ?? false);
    const pack = steps.findIndex((step) => /^npm pack$/m.test(step.run ?? ''));
    expect(pack, `${name}: npm pack`).toBeGreaterThanOrEqual(0);
    expect(steps[pack]!.run).toMatch(/npm ci[^]*npm pack/);
    const login = steps[index('docker/login-action@')]!;
    expect(login.with?.registry).toBe('ghcr.io');
    expect(String(login.with?.password).replace(/\s/g, '')).toBe('${{secrets.GITHUB_TOKEN}}');
    const meta = steps[index('docker/metadata-action@')]!;
    expect(meta.with?.images).toBe('ghcr.io/${{ github.repository }}');
    expect(meta.with?.flavor).toContain('suffix=${{ matrix.suffix }}');
    expect(meta.with?.tags).toContain('type=semver,pattern={{version}}');
    const build = steps[index('docker/build-push-action@')]!;
    // The tarball is no file of the repository: a path context, not the git one.
    expect(build.with).toMatchObject({
      context: '.',
      file: '${{ matrix.dockerfile }}',
      push: true,
      tags: '${{ steps.meta.outputs.tags }}',
    });
    expect(pack).toBeLessThan(index('docker/build-push-action@'));
    expect(index('docker/login-action@')).toBeLessThan(index('docker/build-push-action@'));
  });

  it('no secret or ref is pasted into a script', () => {
    for (const step of allSteps(parseWorkflow(releaseText)))
      expect(step.run ?? '', step.name ?? step.run).not.toMatch(/\$\{\{\s*(secrets|github\.ref|inputs)/);
  });
});

describe('Dependabot', () => {
  const config = parseYaml(readRepoFile('.github/dependabot.yml')) as {
    version: number;
    updates: Array<{
      'package-ecosystem': string;
      directory: string;
      schedule: { interval: string };
      groups?: Record<string, { 'update-types'?: string[] }>;
    }>;
  };
  const update = (ecosystem: string) => config.updates.find((u) => u['package-ecosystem'] === ecosystem);

  it('updates npm (minor and patch grouped), the actions and the Docker base images weekly', () => {
    expect(config.version).toBe(2);
    expect(config.updates.map((u) => u['package-ecosystem']).sort()).toEqual([
      'docker',
      'github-actions',
      'npm',
    ]);
    for (const u of config.updates) expect(u.schedule.interval, u['package-ecosystem']).toBe('weekly');
    expect(update('npm')?.directory).toBe('/');
    expect(Object.values(update('npm')?.groups ?? {}).map((g) => g['update-types']?.sort())).toEqual([
      ['minor', 'patch'],
    ]);
    expect(update('github-actions')?.directory).toBe('/');
    expect(update('docker')?.directory).toBe('/docker');
  });
});

describe('license, changelog and package metadata', () => {
  it('the LICENSE is the MIT licence package.json names', () => {
    const license = readRepoFile('LICENSE');
    expect(pkg.license).toBe('MIT');
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) 2026 image-classifier contributors\n/);
    expect(license).toContain('THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND');
  });

  it('package.json names the repository, its home page, where bugs go, and keywords', () => {
    const repository = pkg.repository as { type: string; url: string };
    expect(repository.type).toBe('git');
    const slug = /^git\+https:\/\/github\.com\/([\w.-]+\/[\w.-]+)\.git$/.exec(repository.url)?.[1];
    expect(slug, repository.url).toBeDefined();
    expect(pkg.homepage).toBe(`https://github.com/${slug}#readme`);
    expect(pkg.bugs).toEqual({ url: `https://github.com/${slug}/issues` });
    expect((pkg.keywords as string[]).length).toBeGreaterThan(3);
    expect(pkg.files).toEqual(expect.arrayContaining(['README.md', 'LICENSE', 'CHANGELOG.md']));
  });

  it("the CHANGELOG has an [Unreleased] section and one for package.json's version", () => {
    const changelog = readRepoFile('CHANGELOG.md');
    expect(changelog).toMatch(/^## \[Unreleased\]$/m);
    // What the release workflow greps for before it publishes.
    expect(changelog).toMatch(new RegExp(`^## \\[${pkg.version.replace(/\./g, '\\.')}\\]`, 'm'));
    expect(releaseText).toContain('grep -q "^## \\[$version\\]" CHANGELOG.md');
  });
});
