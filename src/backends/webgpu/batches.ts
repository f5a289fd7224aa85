// Training batches assembled on the GPU: the uint8 training images are uploaded once (packed four
// to an i32: WebGPU storage has no 8-bit type), and each step's gather, flip, translation and
// normalisation is one dispatch. Per step only the image indices and their augmentation draws
// (four i32 per image, drawn on the CPU from the run's random stream in the same order as
// assembleBatch) and the labels cross the bus, instead of a float32 batch (3 MB at batch 256)
// assembled on one CPU core. Values are looked up in the same float32 normalisation table as on
// the CPU, so a batch is bit-identical to assembleBatch's.
import * as tf from '@tensorflow/tfjs';
import type { ImageSet } from '../../data/dataset.js';
import { elementwise, type WebGpuBackend } from './program.js';

/** Per image: index into the set, flip (0/1), dx, dy. */
export const PARAMS_PER_IMAGE = 4;

export class GpuImages {
  private readonly images: tf.Tensor;
  private readonly table: tf.Tensor;

  private constructor(
    private readonly set: ImageSet,
    table: Float32Array,
  ) {
    const packed = new Int32Array(Math.ceil(set.images.length / 4));
    new Uint8Array(packed.buffer).set(set.images);
    this.images = tf.tensor1d(packed, 'int32');
    this.table = tf.tensor1d(table);
  }

  /**
   * The set on the GPU when the active backend is webgpu and it fits one storage binding; else
   * undefined (the caller assembles on the CPU).
   */
  static upload(set: ImageSet, table: Float32Array): GpuImages | undefined {
    if (tf.getBackend() !== 'webgpu') return undefined;
    const backend = tf.backend() as unknown as WebGpuBackend;
    const limit = backend.device.limits.maxStorageBufferBindingSize;
    if (set.images.length > limit) return undefined;
    return new GpuImages(set, table);
  }

  /** A normalised NHWC float32 batch of the images that `params` (PARAMS_PER_IMAGE each) name. */
  batch(params: Int32Array, count: number): tf.Tensor4D {
    const { height: h, width: w, channels: c } = this.set;
    const backend = tf.backend() as unknown as WebGpuBackend;
    const program = elementwise(
      backend,
      `assemble_${h}_${w}_${c}`,
      [count, h, w, c],
      ['images', 'params', 'table'],
      `let k = i % ${c};
  let pixel = i / ${c};
  let b = pixel / ${h * w};
  let y = (pixel % ${h * w}) / ${w};
  let x = pixel % ${w};
  let p = b * ${PARAMS_PER_IMAGE};
  let sy = y + params[p + 3];
  var sx = x + params[p + 2];
  if (params[p + 1] != 0) { sx = ${w - 1} - x + params[p + 2]; }
  var v = 0.0;
  if (sy >= 0 && sy < ${h} && sx >= 0 && sx < ${w}) {
    let at = params[p] * ${h * w * c} + (sy * ${w} + sx) * ${c} + k;
    let byte = (bitcast<u32>(images[at >> 2u]) >> (u32(at & 3) * 8u)) & 255u;
    v = table[(k << 8u) | i32(byte)];
  }
  result[i] = v;`,
    );
    const paramsTensor = tf.tensor1d(params.subarray(0, count * PARAMS_PER_IMAGE), 'int32');
    const out = backend.runWebGPUProgram(program, [this.images, paramsTensor, this.table], 'float32');
    paramsTensor.dispose();
    return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor4D;
  }

  dispose(): void {
    tf.dispose([this.images, this.table]);
  }
}
