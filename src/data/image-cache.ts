// The decoded images of an image folder, cached as one binary file: magic, a JSON header (the key of
// the listing it was made from), the labels, then the pixels. Read only when the header matches.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

const CACHE_MAGIC = Buffer.from('ICIMGC01', 'latin1');

export interface CacheHeader {
  version: number;
  key: string;
  count: number;
  height: number;
  width: number;
  channels: number;
}

/** Reads the cache if it was written for exactly this listing; undefined otherwise. */
export async function readCache(file: string, expect: CacheHeader): Promise<{ images: Uint8Array; labels: Uint8Array } | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(CACHE_MAGIC.length + 4);
    if ((await handle.read(head, 0, head.length, 0)).bytesRead !== head.length) return undefined;
    if (!head.subarray(0, CACHE_MAGIC.length).equals(CACHE_MAGIC)) return undefined;
    const jsonLength = head.readUInt32LE(CACHE_MAGIC.length);
    if (jsonLength > 1 << 20) return undefined;
    const json = Buffer.alloc(jsonLength);
    if ((await handle.read(json, 0, jsonLength, head.length)).bytesRead !== jsonLength) return undefined;
    const header = JSON.parse(json.toString('utf8')) as CacheHeader;
    if (JSON.stringify(header) !== JSON.stringify(expect)) return undefined;
    const labels = new Uint8Array(expect.count);
    const images = new Uint8Array(expect.count * expect.height * expect.width * expect.channels);
    const offset = head.length + jsonLength;
    const { size } = await handle.stat();
    if (size !== offset + labels.length + images.length) return undefined;
    if ((await handle.read(labels, 0, labels.length, offset)).bytesRead !== labels.length) return undefined;
    // One read call is limited to 2 GiB; loop to be safe on big folders.
    let done = 0;
    while (done < images.length) {
      const { bytesRead } = await handle.read(images, done, Math.min(images.length - done, 1 << 30), offset + labels.length + done);
      if (bytesRead === 0) return undefined;
      done += bytesRead;
    }
    return { images, labels };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}

/** Writes the cache under a temporary name and renames it, so readers never see half a file. */
export async function writeCache(file: string, header: CacheHeader, labels: Uint8Array, images: Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  try {
    const handle = await open(tmp, 'w');
    try {
      for (const part of [CACHE_MAGIC, length, json, labels, images]) {
        let done = 0;
        while (done < part.length) {
          done += (await handle.write(part, done, Math.min(part.length - done, 1 << 30))).bytesWritten;
        }
      }
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
}

