#!/bin/sh
# Installs image-classifier from its `npm pack` tarball the way `npm install --global` lays a package
# out, but against the repository's package-lock.json, with production dependencies only and no
# install scripts (`npm ci --omit=dev --ignore-scripts`):
#
#   PREFIX/lib/node_modules/image-classifier/   the package and its node_modules
#   PREFIX/bin/<name>                           -> each of its "bin" entries (image-classifier-trainer)
#
# docker/Dockerfile and docker/Dockerfile.gpu install the package with it, and so do
# test/ship-pack.test.ts and the CI smoke test, so that what they check is what the image holds.
#
# usage: install-package.sh TARBALL LOCKFILE PREFIX [BACKENDS]
#   BACKENDS  which optional compute backends to keep (the WebAssembly and plain-JS ones are always there):
#     wasm        (default) none: the native and GPU packages, unusable without their install
#                 scripts, are removed
#     native      as wasm, plus our own native kernels (binding.gyp) built with node-gyp: needs a C
#                 compiler, make, python3 and Node's headers (the build never fails the install)
#     tensorflow  @tensorflow/tfjs-node, whose install script downloads libtensorflow (CPU)
#     webgpu      as native, plus the WebGPU packages (webgpu: Dawn's prebuilt binary, shipped in the npm
#                 package; @tensorflow/tfjs-backend-webgpu): the GPU image
#     cuda        @tensorflow/tfjs-node-gpu, whose install script downloads libtensorflow with CUDA
#     all         keep every optional package as installed (install scripts not run)
set -eu

if [ $# -lt 3 ]; then
  echo "usage: $0 TARBALL LOCKFILE PREFIX [wasm|native|webgpu|tensorflow|cuda|all]" >&2
  exit 2
fi
tarball=$1
lockfile=$2
prefix=$3
backends=${4:-wasm}
case $backends in
  wasm | native | webgpu | tensorflow | cuda | all) ;;
  *)
    echo "$0: unknown BACKENDS '$backends' (wasm, native, webgpu, tensorflow, cuda or all)" >&2
    exit 2
    ;;
esac

mkdir -p "$prefix/bin"
prefix=$(cd "$prefix" && pwd)
package=$prefix/lib/node_modules/image-classifier
rm -rf "$package"
mkdir -p "$package"
# npm pack puts everything under package/.
tar -xzf "$tarball" -C "$package" --strip-components=1 --no-same-owner
cp "$lockfile" "$package/package-lock.json"
cd "$package"

# Exactly the versions of the lockfile; --prefer-offline uses the npm cache when it has them.
npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline

remove() {
  for name in "$@"; do rm -rf "node_modules/$name"; done
}
case $backends in
  wasm) remove @tensorflow/tfjs-node @tensorflow/tfjs-node-gpu webgpu @tensorflow/tfjs-backend-webgpu ;;
  native)
    remove @tensorflow/tfjs-node @tensorflow/tfjs-node-gpu webgpu @tensorflow/tfjs-backend-webgpu
    # The package's own install script (skipped by --ignore-scripts above): native/build.mjs.
    npm run install
    ;;
  webgpu)
    remove @tensorflow/tfjs-node @tensorflow/tfjs-node-gpu
    npm run install
    ;;
  tensorflow)
    remove @tensorflow/tfjs-node-gpu webgpu @tensorflow/tfjs-backend-webgpu
    npm rebuild @tensorflow/tfjs-node
    ;;
  cuda)
    remove @tensorflow/tfjs-node webgpu @tensorflow/tfjs-backend-webgpu
    npm rebuild @tensorflow/tfjs-node-gpu
    ;;
  all) ;;
esac

# Link the package's executables into PREFIX/bin, as npm does for a global install.
# shellcheck disable=SC2016 # a JavaScript template literal, not a shell expansion
node -e '
const { chmodSync, rmSync, symlinkSync } = require("node:fs");
const { join, relative } = require("node:path");
const [packageFolder, binFolder] = process.argv.slice(1);
const { bin = {} } = require(join(packageFolder, "package.json"));
for (const [name, file] of Object.entries(typeof bin === "string" ? {} : bin)) {
  const target = join(packageFolder, file);
  chmodSync(target, 0o755);
  rmSync(join(binFolder, name), { force: true });
  symlinkSync(relative(binFolder, target), join(binFolder, name));
  console.log(`${join(binFolder, name)} -> ${target}`);
}
' "$package" "$prefix/bin"
