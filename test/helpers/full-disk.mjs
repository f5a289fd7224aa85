// Preloaded into the CLI (`NODE_OPTIONS=--import <this file>`) to simulate a disk that fills up: once
// $FULL_DISK_AFTER writes to paths matching $FULL_DISK_PATH (a regular expression) have succeeded,
// every further one fails with ENOSPC, the error writeFile gives on a full disk. The trainer's own
// code is unchanged: this replaces fs/promises.writeFile, which it imports, before it loads.
import fs from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

const pattern = new RegExp(process.env.FULL_DISK_PATH ?? '$^');
const allowed = Number(process.env.FULL_DISK_AFTER ?? 0);
let matched = 0;
const writeFile = fs.writeFile;
fs.writeFile = async (path, ...rest) => {
  if (typeof path === 'string' && pattern.test(path) && ++matched > allowed) {
    const error = new Error(`ENOSPC: no space left on device, write '${path}'`);
    Object.assign(error, { code: 'ENOSPC', errno: -28, syscall: 'write', path });
    throw error;
  }
  return writeFile(path, ...rest);
};
// Named imports (`import { writeFile } from 'node:fs/promises'`) see the replacement too.
syncBuiltinESMExports();
