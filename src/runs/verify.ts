// verify: has anything in a run folder changed since it was written? Recomputes the sha256 of every
// file its manifest lists and compares; run.json itself is checked against the checksum it holds of
// its own content.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findRunFolder, readManifest } from './load-run.js';
import { manifestChecksum, sha256File } from './manifest.js';
import { RUN_FILES } from './layout.js';
import { DEFAULT_EXPERIMENTS_FOLDER } from '../config.js';

export interface FileCheck {
  file: string;
  status: 'ok' | 'changed' | 'missing';
}

export interface VerifyReport {
  /** Absolute path of the run folder. */
  path: string;
  /** True when every listed file is there with its recorded hash, and run.json is unedited. */
  ok: boolean;
  /**
   * The files checked: those run.json lists, then run.json itself when it holds a checksum of its
   * content (runs written before it did are checked for their other files only).
   */
  files: FileCheck[];
}

export async function verifyRun(
  run: string,
  experimentsFolder = DEFAULT_EXPERIMENTS_FOLDER,
): Promise<VerifyReport> {
  const path = findRunFolder(run, experimentsFolder);
  const manifest = await readManifest(path);
  const files: FileCheck[] = [];
  for (const [file, recorded] of Object.entries(manifest.files)) {
    const full = join(path, file);
    if (!existsSync(full)) files.push({ file, status: 'missing' });
    else files.push({ file, status: (await sha256File(full)) === recorded ? 'ok' : 'changed' });
  }
  if (manifest.manifestSha256 !== undefined) {
    const same = manifestChecksum(manifest) === manifest.manifestSha256;
    files.push({ file: RUN_FILES.manifest, status: same ? 'ok' : 'changed' });
  }
  return { path, ok: files.every((f) => f.status === 'ok'), files };
}
