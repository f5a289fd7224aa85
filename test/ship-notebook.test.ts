// notebooks/compare-runs.ts on two small synthetic runs, and notebooks/compare-runs.ipynb: a valid
// nbformat 4 notebook whose cells import only what the module exports and, run in order (as the Deno
// kernel runs them), display the table and the charts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createCanvas, loadImage } from '@napi-rs/canvas';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { train } from '../src/index.js';
import * as compare from '../notebooks/compare-runs.js';
import { tempFolder } from './helpers/cli.js';
import { REPO } from './helpers/ship.js';

const NOTEBOOK = join(REPO, 'notebooks', 'compare-runs.ipynb');
const DENO_CONFIG = join(REPO, 'notebooks', 'deno.json');
const MODULE = join(REPO, 'notebooks', 'compare-runs.ts');

interface Cell {
  cell_type: string;
  id?: string;
  metadata: { tags?: string[] } & Record<string, unknown>;
  source: string | string[];
  outputs?: unknown[];
  execution_count?: number | null;
}

interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: { kernelspec?: { name: string; language: string; display_name: string } } & Record<
    string,
    unknown
  >;
  cells: Cell[];
}

const notebook = JSON.parse(readFileSync(NOTEBOOK, 'utf8')) as Notebook;
const codeCells = notebook.cells.filter((c) => c.cell_type === 'code');
/** Deno, when one is installed (not needed otherwise: the test below that uses it is skipped). */
function findDeno(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v deno'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}
const deno = findDeno();

const text = (cell: Cell) => (Array.isArray(cell.source) ? cell.source.join('') : cell.source);

function parse(code: string): ts.SourceFile {
  return ts.createSourceFile('cell.ts', code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
}

/** PNG width and height from the IHDR chunk. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** How many pixels of a PNG have exactly the colour `#rrggbb`: a drawn bar or line has hundreds. */
async function pixelsOf(png: Uint8Array, colour: string): Promise<number> {
  const image = await loadImage(Buffer.from(png));
  const canvas = createCanvas(image.width, image.height);
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const { data } = context.getImageData(0, 0, image.width, image.height);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  let count = 0;
  for (let i = 0; i < data.length; i += 4)
    if (data[i] === r && data[i + 1] === g && data[i + 2] === b) count++;
  return count;
}

describe('notebooks/compare-runs', () => {
  const root = tempFolder('ic-notebook-');
  const experiments = join(root, 'experiments');
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  beforeAll(async () => {
    const quick = {
      experimentName: 'cmp',
      experimentsFolder: experiments,
      dataset: 'synthetic',
      model: 'net',
      // Not whatever GPU (or software Vulkan) this machine may have: these runs are only the notebook's data.
      device: 'cpu',
    } as const;
    await train({ ...quick, runName: 'run-2', epochs: 2, batchSize: 64, learningRate: 0.05, seed: 1 });
    await train({ ...quick, runName: 'run-10', epochs: 2, batchSize: 64, learningRate: 0.1, seed: 2 });
    // Neither is a run: a hidden (partial) folder and a folder without run.json.
    mkdirSync(join(experiments, 'cmp', '.run-3.partial'));
    mkdirSync(join(experiments, 'cmp', 'notes'));
  }, 240_000);

  it('loads the runs of an experiment through the library', async () => {
    expect(await compare.listRuns('cmp', experiments)).toEqual(['run-2', 'run-10']);
    const runs = await compare.loadExperiment('cmp', experiments);
    expect(runs.map((r) => r.manifest.run)).toEqual(['run-2', 'run-10']);
    expect(runs[0]!.path).toBe(join(experiments, 'cmp', 'run-2'));
    await expect(compare.listRuns('nothing', experiments)).rejects.toThrow(/no experiment nothing/);
  });

  it('tabulates their configuration and accuracy', async () => {
    const runs = await compare.loadExperiment('cmp', experiments);
    const rows = compare.runTable(runs);
    expect(rows.map((r) => [r.run, r.learningRate, r.seed, r.epochs, r.batchSize, r.model])).toEqual([
      ['run-2', 0.05, 1, 2, 64, 'net'],
      ['run-10', 0.1, 2, 2, 64, 'net'],
    ]);
    for (const [i, row] of rows.entries()) {
      expect(row.testAccuracy).toBe(runs[i]!.manifest.results.testAccuracy);
      expect(row.bestValidationAccuracy).toBe(
        Math.max(...runs[i]!.metrics.history.map((h) => h.validationAccuracy)),
      );
      expect(row.imagesPerSecond).toBeGreaterThan(0);
    }
    expect(compare.differingKeys(runs)).toEqual(['learningRate', 'seed']);

    const markdown = compare.toMarkdown(rows);
    const lines = markdown.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\| run \| model \|.*\| test acc\. \|/);
    const best = compare.bestRun(rows)!;
    expect(markdown).toContain(`| **${best.run}** |`);
    expect(markdown).toContain(`${(best.testAccuracy * 100).toFixed(2)}%`);
  });

  it('charts them as PNGs: bars per run (the best in red), a line per run', async () => {
    const runs = await compare.loadExperiment('cmp', experiments);
    const bars = compare.accuracyChart(runs);
    expect(pngSize(bars)).toEqual({ width: 900, height: 480 });
    expect(await pixelsOf(bars, compare.BEST_COLOUR)).toBeGreaterThan(1000);
    expect(await pixelsOf(bars, compare.BAR_COLOUR)).toBeGreaterThan(1000);
    for (const metric of ['trainLoss', 'trainAccuracy', 'validationLoss', 'validationAccuracy'] as const) {
      const curves = compare.curvesChart(runs, metric);
      expect(pngSize(curves)).toEqual({ width: 900, height: 480 });
      for (const colour of compare.PALETTE.slice(0, runs.length))
        expect(await pixelsOf(curves, colour), `${metric} ${colour}`).toBeGreaterThan(100);
    }
    const image = compare.png(bars);
    expect(Buffer.from(image.bundle['image/png']!, 'base64')).toEqual(bars);
    // What the Deno kernel calls to display a value.
    const display = (image as unknown as Record<symbol, () => Record<string, string>>)[
      Symbol.for('Jupyter.display')
    ]!;
    expect(Object.keys(display())).toEqual(['image/png', 'text/plain']);
  });

  it('the notebook is valid nbformat 4, for the Deno kernel, saved without outputs', () => {
    expect(notebook.nbformat).toBe(4);
    expect(notebook.nbformat_minor).toBeGreaterThanOrEqual(5);
    expect(notebook.metadata.kernelspec).toEqual({
      name: 'deno',
      language: 'typescript',
      display_name: 'Deno',
    });
    const ids = notebook.cells.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const cell of notebook.cells) {
      expect(['markdown', 'code', 'raw']).toContain(cell.cell_type);
      expect(cell.id).toMatch(/^[a-zA-Z0-9-_]{1,64}$/);
      expect(typeof cell.metadata).toBe('object');
      expect(typeof cell.source === 'string' || cell.source.every((line) => typeof line === 'string')).toBe(
        true,
      );
      if (cell.cell_type === 'code') {
        expect(cell.outputs).toEqual([]);
        expect(cell.execution_count).toBeNull();
      } else {
        expect(cell.outputs).toBeUndefined();
      }
    }
    expect(codeCells.length).toBeGreaterThanOrEqual(4);
  });

  it("the notebook's cells import only what the module exports", () => {
    const exported = new Set(Object.keys(compare));
    const imported: string[] = [];
    for (const cell of codeCells) {
      for (const statement of parse(text(cell)).statements) {
        if (!ts.isImportDeclaration(statement)) continue;
        expect((statement.moduleSpecifier as ts.StringLiteral).text).toBe('./compare-runs.ts');
        const bindings = statement.importClause?.namedBindings;
        expect(bindings && ts.isNamedImports(bindings)).toBe(true);
        for (const element of (bindings as ts.NamedImports).elements) imported.push(element.name.text);
      }
    }
    expect(imported.length).toBeGreaterThan(0);
    for (const name of imported)
      expect(exported, `${name} is not exported by compare-runs.ts`).toContain(name);
  });

  it('its cells run in order on the runs and display the summary, the table and the charts', async () => {
    // The cells as one module: the parameters cell pointed at the test's runs, the import at the module,
    // and each cell's last expression (what Jupyter displays) collected.
    const parameters = codeCells.filter((c) => c.metadata.tags?.includes('parameters'));
    expect(parameters).toHaveLength(1);
    const declared = parse(text(parameters[0]!)).statements.flatMap((s) =>
      ts.isVariableStatement(s) ? s.declarationList.declarations.map((d) => d.name.getText()) : ['<other>'],
    );
    expect(declared).toEqual(['experiment', 'experimentsFolder']);

    const parts = ['export const displayed: unknown[] = [];'];
    for (const cell of codeCells) {
      if (cell === parameters[0]) {
        parts.push(`const experiment = 'cmp';\nconst experimentsFolder = ${JSON.stringify(experiments)};`);
        continue;
      }
      let code = text(cell).replaceAll("'./compare-runs.ts'", JSON.stringify(MODULE));
      const last = parse(code).statements.at(-1);
      if (last && ts.isExpressionStatement(last))
        code = `${code.slice(0, last.getStart())}displayed.push(${last.expression.getText()});${code.slice(last.end)}`;
      parts.push(code);
    }
    const file = join(root, 'cells.ts');
    writeFileSync(file, parts.join('\n\n') + '\n');
    const { displayed } = (await import(/* @vite-ignore */ pathToFileURL(file).href)) as {
      displayed: unknown[];
    };

    expect(displayed).toHaveLength(codeCells.length - 1);
    expect(displayed[0]).toBe('2 runs of cmp; settings that differ between them: learningRate, seed');
    const bundles = displayed.slice(1).map((d) => (d as compare.Displayable).bundle);
    expect(bundles[0]!['text/markdown']).toMatch(/^\| run \|/);
    expect(bundles[0]!['text/markdown']).toContain('run-10');
    expect(bundles).toHaveLength(4);
    for (const bundle of bundles.slice(1)) {
      const png = Buffer.from(bundle['image/png']!, 'base64');
      expect(pngSize(png).width).toBe(900);
      expect(await pixelsOf(png, compare.PALETTE[0]!)).toBeGreaterThan(100);
    }
  });

  it("Deno's kernel runs the module from the sources, with the repository's node_modules", () => {
    const config = JSON.parse(readFileSync(DENO_CONFIG, 'utf8')) as {
      unstable?: string[];
      nodeModulesDir?: string;
    };
    // compare-runs.ts imports ../src/index.js, which is index.ts: Deno needs sloppy imports for that.
    expect(readFileSync(MODULE, 'utf8')).toContain("from '../src/index.js'");
    expect(config.unstable).toContain('sloppy-imports');
    expect(config.nodeModulesDir).toBe('manual');
  });

  it.skipIf(!deno)('runs under Deno (when deno is installed)', () => {
    const script = join(root, 'deno-check.ts');
    writeFileSync(
      script,
      [
        'const compare = await import(Deno.args[0]!);',
        'const runs = await compare.loadExperiment(Deno.args[1], Deno.args[2]);',
        'const rows = compare.runTable(runs);',
        'console.log(JSON.stringify({ runs: rows.map((r: { run: string }) => r.run), png: compare.accuracyChart(runs).byteLength }));',
        '',
      ].join('\n'),
    );
    const out = execFileSync(
      deno!,
      ['run', '--allow-all', '--config', DENO_CONFIG, script, pathToFileURL(MODULE).href, 'cmp', experiments],
      { encoding: 'utf8', cwd: join(REPO, 'notebooks') },
    );
    const result = JSON.parse(out.trim().split('\n').pop()!) as { runs: string[]; png: number };
    expect(result.runs).toEqual(['run-2', 'run-10']);
    expect(result.png).toBeGreaterThan(5000);
  });
});
