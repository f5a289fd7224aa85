// Kernels of the native backend (see conv.c). NHWC tensors, filters as
// [kh*kw*c][ld] rows with ld a multiple of 16 (zero-padded columns).
#ifndef IMAGE_CLASSIFIER_CONV_H
#define IMAGE_CLASSIFIER_CONV_H

struct conv_args {
  const float *x;     // input [n][h][w][c]
  const float *zeros; // at least c zeros: what padding taps read
  int n, h, w, c;     // input shape
  int kh, kw, sh, sw; // filter size, strides
  int pt, pl;         // padding before the first row / column
  int oh, ow;         // output size
  int relu;           // forward only: ReLU after the bias
};

// 1 when no output column reads padding: the kernels then take a kernel row (kw*c contiguous floats)
// as one tap.
int ic_row_mode(const struct conv_args *a);
// 2: AVX-512, 1: AVX2 with FMA, 0: neither (the backend is unavailable).
int ic_isa(void);
// Restricts the kernels to an instruction set (-1: the best); returns the one used.
int ic_use_isa(int isa);
// The instruction set the kernels use.
int ic_current_isa(void);
// out[m][f] = bias[f] + sum_{tap,c} x[...] * w[(tap*c_in + c)*ldw + f], f < ldw; row stride ldo.
void ic_conv_forward(const struct conv_args *a, const float *w, int ldw, const float *bias, float *out, int ldo,
                     int threads);
// dw[(tap*c_in + c)*ldw + f] = sum over output pixels of x[...] * dy[m*ldd + f], f < ldw.
void ic_conv_filter(const struct conv_args *a, const float *dy, int ldd, float *dw, int ldw, int threads);

// The input gradient by columns: each output pixel's column dy[pixel] x wt ([f][ldc], the filter
// transposed: ldc >= kh*kw*c) is added into the input pixels its taps read. a describes the forward
// convolution (its x is dx); any stride and padding. Returns 0 when out of memory.
int ic_input_grad_by_columns(const struct conv_args *a, const float *dy, int f, const float *wt, int ldc,
                             float *dx, int threads);

#endif
