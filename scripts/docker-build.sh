#!/usr/bin/env bash
# Builds the trainer's Docker image from the npm package: `npm pack` (its prepack script builds dist/),
# then `docker build` with the tarball and package-lock.json as the whole build context.
#
# usage: scripts/docker-build.sh [--gpu] [--tag NAME] [other docker build options]
#   (or: npm run docker:build -- [--gpu] [--tag NAME] ...)
#   --gpu       docker/Dockerfile.gpu (CUDA, @tensorflow/tfjs-node-gpu) instead of docker/Dockerfile
#   --tag NAME  the image's name (default: image-classifier:<version>, or image-classifier:<version>-gpu)
# Other options go to docker build, e.g. --build-arg BACKENDS=tensorflow (CPU image with libtensorflow).
set -euo pipefail
cd "$(dirname "$0")/.."

dockerfile=docker/Dockerfile
suffix=
tag=
build_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --gpu)
      dockerfile=docker/Dockerfile.gpu
      suffix=-gpu
      ;;
    --tag | -t)
      tag=${2:?--tag needs a name}
      shift
      ;;
    --tag=*) tag=${1#--tag=} ;;
    *) build_args+=("$1") ;;
  esac
  shift
done

version=$(node -p "require('./package.json').version")
tag=${tag:-image-classifier:${version}${suffix}}

# One tarball in the context: the Dockerfiles copy image-classifier-*.tgz.
rm -f image-classifier-*.tgz
npm pack
tarball=$(ls image-classifier-*.tgz)
echo "packed $tarball"

docker build --file "$dockerfile" --tag "$tag" ${build_args[@]+"${build_args[@]}"} .
echo "built $tag"
