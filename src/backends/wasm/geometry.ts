// The geometry of convolutions and poolings as tfjs's attrs describe them (NHWC, no dilation), for
// our wasm kernels and the native addon's.
import * as tf from '@tensorflow/tfjs';

type Conv2DBackpropFilterAttrs = tf.Conv2DBackpropFilterAttrs;
type Conv2DBackpropInputAttrs = tf.Conv2DBackpropInputAttrs;

export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  kH: number;
  kW: number;
  outH: number;
  outW: number;
  outC: number;
  sH: number;
  sW: number;
  padTop: number;
  padLeft: number;
}

export function convGeometry(
  inputShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: [number, number] | number,
  pad: Conv2DBackpropFilterAttrs['pad'],
  dimRoundingMode: Conv2DBackpropFilterAttrs['dimRoundingMode'],
  dataFormat: 'NHWC' | 'NCHW',
): ConvGeometry {
  if (dataFormat !== 'NHWC') {
    throw new Error(`image-classifier wasm conv gradients support NHWC only, got ${dataFormat}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    sH: info.strideHeight,
    sW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** Conv2DBackpropFilter's inputs and geometry (shared with the native backend's kernel). */
export function backpropFilterArgs(params: Parameters<tf.KernelFunc>[0]): {
  x: tf.TensorInfo;
  dy: tf.TensorInfo;
  g: ConvGeometry;
} {
  const { x, dy } = params.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
  const a = params.attrs as unknown as Conv2DBackpropFilterAttrs;
  const g = convGeometry(
    x.shape as [number, number, number, number],
    a.filterShape,
    a.strides,
    a.pad,
    a.dimRoundingMode,
    a.dataFormat,
  );
  return { x, dy, g };
}

/** Conv2DBackpropInput's inputs and geometry (shared with the native backend's kernel). */
export function backpropInputArgs(params: Parameters<tf.KernelFunc>[0]): {
  dy: tf.TensorInfo;
  filter: tf.TensorInfo;
  g: ConvGeometry;
} {
  const { dy, filter } = params.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  // Cast: tfjs passes attrs as a generic map; these are the op's attrs.
  const a = params.attrs as unknown as Conv2DBackpropInputAttrs;
  const g = convGeometry(
    a.inputShape,
    filter.shape as [number, number, number, number],
    a.strides,
    a.pad,
    a.dimRoundingMode,
    a.dataFormat,
  );
  return { dy, filter, g };
}

/** A 2-D pooling's geometry (NHWC, no dilation), for our kernels and the native backend's. */
export function pool2DInfo(
  x: tf.TensorInfo,
  a: Pick<tf.MaxPoolAttrs, 'filterSize' | 'strides' | 'pad' | 'dimRoundingMode'>,
): ReturnType<typeof tf.backend_util.computePool2DInfo> {
  return tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
}
