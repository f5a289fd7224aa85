// Reading a small file that a user or another program gave us (a --config file, run.json, model.json)
// without trusting it: a device (/dev/zero), a FIFO or a huge file would otherwise be read whole
// into memory. Only regular files up to a size are read.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { UnreadableFileError } from '../errors.js';

// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before fstat can refuse it.
const FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${Number((bytes / 2 ** 30).toFixed(1))} GiB`;
  if (bytes >= 2 ** 20) return `${Number((bytes / 2 ** 20).toFixed(1))} MiB`;
  if (bytes >= 2 ** 10) return `${Number((bytes / 2 ** 10).toFixed(1))} KiB`;
  return `${bytes} bytes`;
}

function check(isFile: boolean, size: number, maxBytes: number): void {
  if (!isFile) throw new UnreadableFileError('not a regular file');
  if (size > maxBytes) {
    throw new UnreadableFileError(`${formatBytes(size)}, more than the ${formatBytes(maxBytes)} allowed`);
  }
}

function tooLong(maxBytes: number): UnreadableFileError {
  // The size changed while reading (a file still being written, or a /proc-like file).
  return new UnreadableFileError(`more than the ${formatBytes(maxBytes)} allowed`);
}

const CHUNK = 1 << 16;

/** Reads a regular file of at most `maxBytes`; throws UnreadableFileError (or the fs error) otherwise. */
export function readBoundedFileSync(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    const stats = fstatSync(fd);
    check(stats.isFile(), stats.size, maxBytes);
    // Read to the end whatever the size said: a file may grow past the limit while it is read.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const n = readSync(fd, chunk, 0, CHUNK, null);
      if (n === 0) break;
      length += n;
      if (length > maxBytes) throw tooLong(maxBytes);
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks, length);
  } finally {
    closeSync(fd);
  }
}

/** The promise version of readBoundedFileSync. */
export async function readBoundedFile(path: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(path, FLAGS);
  try {
    const stats = await handle.stat();
    check(stats.isFile(), stats.size, maxBytes);
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await handle.read(chunk, 0, CHUNK, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw tooLong(maxBytes);
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, length);
  } finally {
    await handle.close();
  }
}
