// Install step (`npm install` / `npm ci` run it as the package's `install` script): builds the optional
// native addon (native/, binding.gyp) with node-gyp. Never fails the install: without a C compiler or
// Node's headers the addon is simply missing, and the `native` backend says so (`doctor`) while
// training uses the wasm backend. IMAGE_CLASSIFIER_SKIP_NATIVE=1 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function main() {
  if (process.env.IMAGE_CLASSIFIER_SKIP_NATIVE === '1') return;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.log(
      'image-classifier: native kernels are for Linux x64 only; training will use the wasm backend',
    );
    return;
  }
  if (!existsSync(join(root, 'binding.gyp'))) return;
  // npm hands its bundled node-gyp to install scripts; outside npm, the one on PATH.
  const gyp = process.env.npm_config_node_gyp;
  const [command, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  const started = Date.now();
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8', timeout: 300_000 });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (result.status === 0) {
    console.log(`image-classifier: native kernels built in ${seconds} s (backend 'native')`);
    return;
  }
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n');
  const why = result.error
    ? result.error.message
    : (output.findLast((l) => /error/i.test(l)) ?? output.at(-1) ?? '');
  console.log(
    `image-classifier: native kernels not built (${why.trim()}); training will use the wasm backend. ` +
      'A C compiler, make, python3 and Node headers enable them: npm rebuild image-classifier',
  );
}

main();
