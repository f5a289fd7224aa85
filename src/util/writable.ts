// Is a folder (or the place where it would be created) writable? Asked before a command does any work,
// so a read-only experiments folder is refused in one line rather than failing after training with
// whatever error the first write happened to get.
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';

function describe(code: string | undefined): string {
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EROFS') return 'read-only file system';
  return code ?? 'cannot be written';
}

/**
 * Throws a ConfigError naming `flag` when `folder` cannot be written: it, or the nearest folder above
 * it that exists, must be a folder we may create entries in.
 */
export function assertWritableFolder(folder: string, flag: string, given = folder): void {
  let dir = resolve(folder);
  for (;;) {
    try {
      const stats = statSync(dir);
      if (!stats.isDirectory()) throw new ConfigError(`${flag} ${given}: ${dir} is not a folder`);
      break;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      // Not there yet: it will be created in its parent, which must then be writable.
      if (code !== 'ENOENT' || dirname(dir) === dir) {
        throw new ConfigError(`${flag} ${given} is not writable (${dir}: ${describe(code)})`);
      }
      dir = dirname(dir);
    }
  }
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new ConfigError(
      `${flag} ${given} is not writable (${dir}: ${describe((error as NodeJS.ErrnoException).code)}); choose another ${flag}`,
    );
  }
}
