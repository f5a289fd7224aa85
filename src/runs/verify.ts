// verify: has anything in a run folder changed since it was written? Recomputes the sha256 of every
// file its manifest lists and compares.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findRunFolder, readManifest } from './load-run.js';
import { sha256File } from './manifest.js';

export interface FileCheck {
  file: string;
  status: 'ok' | 'changed' | 'missing';
}

export interface VerifyReport {
  /** Absolute path of the run folder. */
  path: string;
  /** True when every listed file is there with its recorded hash. */
  ok: boolean;
  files: FileCheck[];
}

export async function verifyRun(run: string, experimentsFolder = './experiments'): Promise<VerifyReport> {
  const path = findRunFolder(run, experimentsFolder);
  const manifest = await readManifest(path);
  const files: FileCheck[] = [];
  for (const [file, recorded] of Object.entries(manifest.files)) {
    const full = join(path, file);
    if (!existsSync(full)) files.push({ file, status: 'missing' });
    else files.push({ file, status: (await sha256File(full)) === recorded ? 'ok' : 'changed' });
  }
  return { path, ok: files.every((f) => f.status === 'ok'), files };
}
