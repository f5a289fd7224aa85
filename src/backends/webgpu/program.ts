// The part of tfjs-backend-webgpu our kernels use: a program is WGSL plus how to dispatch it, and the
// backend compiles it once per shader key, binds `result` (the output, read-write) and one read-only
// storage array per name in `variableNames`, and records it into its own command encoder. Going
// through runWebGPUProgram keeps our dispatches in order with tfjs's and its buffer reuse intact.
//
// Our programs bake their shapes into the WGSL as constants (the key names them): a training run
// sees a handful of layer shapes, and constant trip counts and divisors let the compiler unroll and
// strength-reduce the index arithmetic that dominates small tiles.
import type * as tf from '@tensorflow/tfjs';

export interface WebGpuProgram {
  outputShape: number[];
  shaderKey: string;
  /** Which output dimensions each dispatch axis covers (tfjs uses it for helper snippets only). */
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  /** Vector width of each input binding (1 or 4); the output's is outputComponent. */
  variableComponents?: number[];
  outputComponent?: number;
  /** WGSL struct members appended to tfjs's uniforms, filled from `run`'s `uniforms` in order. */
  uniforms?: string;
  getUserCode(): string;
}

/** The WebGPU backend as our kernels see it (tfjs-backend-webgpu's WebGPUBackend). */
export interface WebGpuBackend {
  runWebGPUProgram(
    program: WebGpuProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: Array<{ type: string; data: number[] }>,
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  disposeData(dataId: tf.TensorInfo['dataId'], force?: boolean): boolean;
  /** Device limits we size dispatches by. */
  device: { limits: { maxComputeWorkgroupsPerDimension: number; maxStorageBufferBindingSize: number } };
}

/**
 * A program with a fixed workgroup and grid: `main()` gets the workgroup id and the local index
 * through tfjs's globals (`workgroupId`, `localIndex`).
 */
export function program(options: {
  key: string;
  outputShape: number[];
  inputs: string[];
  workgroupSize: number;
  grid: [number, number, number];
  code: string;
  variableComponents?: number[];
  /** Values that change between calls (a learning rate): WGSL members, e.g. `lr : f32,`. */
  uniforms?: string;
}): WebGpuProgram {
  return {
    outputShape: options.outputShape,
    shaderKey: `ic_${options.key}`,
    // Any non-flat layout: tfjs then leaves the indexing to us.
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: options.grid,
    variableNames: options.inputs,
    workgroupSize: [options.workgroupSize, 1, 1],
    variableComponents: options.variableComponents,
    uniforms: options.uniforms,
    // tfjs binds its uniforms (shapes) to every program, and a pipeline with an 'auto' layout only
    // has the bindings its shader uses: touch them.
    getUserCode: () => options.code.replace('fn main() {', 'fn main() {\n  _ = uniforms.NAN;'),
  };
}

/** Runs a program with a float32 output; `uniforms` fills the program's own uniform members. */
export function run(
  backend: WebGpuBackend,
  prog: WebGpuProgram,
  inputs: tf.TensorInfo[],
  uniforms?: Array<{ type: 'float32' | 'int32'; data: number[] }>,
): tf.TensorInfo {
  return backend.runWebGPUProgram(prog, inputs, 'float32', uniforms);
}

/** An element-wise program over `size` outputs: `code` is the body, with `i` the flat index. */
export function elementwise(
  backend: WebGpuBackend,
  key: string,
  outputShape: number[],
  inputs: string[],
  body: string,
  uniforms?: string,
): WebGpuProgram {
  const size = outputShape.reduce((a, b) => a * b, 1);
  return program({
    key: `${key}_${size}`,
    outputShape,
    inputs,
    workgroupSize: 256,
    grid: grid1d(backend, size, 256),
    uniforms,
    code: `
fn main() {
  let i = ${FLAT_GROUP} * 256 + i32(localIndex);
  if (i >= ${size}) { return; }
  ${body}
}`,
  });
}

/** Workgroups along x for `count` items, `perGroup` each, folded into y beyond the device limit. */
export function grid1d(backend: WebGpuBackend, count: number, perGroup: number): [number, number, number] {
  const groups = Math.ceil(count / perGroup);
  const limit = backend.device.limits.maxComputeWorkgroupsPerDimension;
  return groups <= limit ? [groups, 1, 1] : [limit, Math.ceil(groups / limit), 1];
}

/** WGSL: the flat workgroup index of a grid made by grid1d. */
export const FLAT_GROUP = 'i32(workgroupId.y * numWorkgroups.x + workgroupId.x)';
