// The shape of src/ as the README's architecture section draws it: no import circles between files,
// no two folders that import each other, and a map that names every folder and only files that exist.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readRepoFile, REPO } from './helpers/ship.js';

const SRC = join(REPO, 'src');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : name.endsWith('.ts') ? [path] : [];
  });
}

function foldersUnder(dir: string): string[] {
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isDirectory())
    .flatMap((path) => [path, ...foldersUnder(path)]);
}

/** Each source file's relative imports (static and dynamic), as absolute .ts paths. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of filesUnder(SRC)) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(/(?:from |import\()\s*'(\.{1,2}\/[^']+)\.js'/g)].map((m) =>
      resolve(dirname(file), `${m[1]}.ts`),
    );
    graph.set(file, targets);
  }
  return graph;
}

/** A cycle of files (through static or dynamic imports), or null: a depth-first search. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): string[] | null => {
    if (state.get(file) === 'done') return null;
    if (state.get(file) === 'open') return stack.slice(stack.indexOf(file)).concat(file);
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(file, 'done');
    return null;
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle.map((f) => relative(REPO, f));
  }
  return null;
}

/** `training`, `runs`, ...: the top folder of src/ a file is in; a file of src/ itself is its own (`config.ts`). */
const topFolder = (file: string) => relative(SRC, file).split('/')[0]!;

describe('the architecture of src/', () => {
  const graph = importGraph();

  it('has no import circles', () => {
    for (const targets of graph.values()) for (const t of targets) expect(graph.has(t), t).toBe(true);
    expect(findCycle(graph)).toBeNull();
  });

  it('has no two top folders that import each other', () => {
    const edges = new Set<string>();
    for (const [file, targets] of graph)
      for (const target of targets)
        if (topFolder(file) !== topFolder(target)) edges.add(`${topFolder(file)} -> ${topFolder(target)}`);
    const both = [...edges].filter((edge) => edges.has(edge.split(' -> ').reverse().join(' -> ')));
    expect(both).toEqual([]);
  });

  it("matches the README's map: every folder named, every file named exists", () => {
    const readme = readRepoFile('README.md');
    const section = readme.slice(readme.indexOf('## Architecture'));
    const map = /```\n(src\/\n[\s\S]*?)```/.exec(section)![1]!;
    for (const folder of foldersUnder(SRC)) {
      const name = relative(SRC, folder).split('/').at(-1)!;
      expect(map, `src/${relative(SRC, folder)} is not in the map`).toMatch(new RegExp(`\\b${name}/`));
    }
    const names = new Set(filesUnder(SRC).map((f) => f.split('/').at(-1)!));
    for (const [named] of map.matchAll(/[\w-]+\.ts\b/g))
      expect(names, `${named} in the map`).toContain(named);
    for (const file of readdirSync(SRC).filter((n) => n.endsWith('.ts'))) expect(map).toContain(file);
  });
});
