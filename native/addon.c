// Node-API bindings of the native kernels (conv.c). Tensors live on the tfjs
// wasm backend's heap: every call takes a Uint8Array over that heap and byte
// offsets into it, computes in place and returns. The JavaScript side
// (src/backends/native/kernels.ts) checks shapes and falls back to the wasm
// kernels for anything these do not cover; src/backends/native/addon.ts types
// these functions, with the parameters in the order the comments below give.
// A call with another number of arguments throws a TypeError naming the function.
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch-norm.h"
#include "conv.h"
#include "pool.h"
#include "relu.h"

#define MAX_ARGS 24

// Throws a TypeError "image-classifier native: <function>: <what>".
static void throw_type_error(napi_env env, const char *fn, const char *what) {
  char message[160];
  snprintf(message, sizeof(message), "image-classifier native: %s: %s", fn, what);
  napi_throw_type_error(env, NULL, message);
}

// Reads exactly `count` arguments (at most MAX_ARGS) into argv; throws and returns 0 on another count.
// The function's name is its callback data (see NAPI_MODULE_INIT).
static int get_args(napi_env env, napi_callback_info info, size_t count, napi_value *argv, const char **fn) {
  size_t argc = MAX_ARGS;
  napi_value all[MAX_ARGS];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, all, NULL, &data) != napi_ok) {
    napi_throw_error(env, NULL, "image-classifier native: cannot read the call's arguments");
    return 0;
  }
  *fn = data;
  if (argc != count) {
    char what[96];
    snprintf(what, sizeof(what), "takes %zu argument%s, got %zu", count, count == 1 ? "" : "s", argc);
    throw_type_error(env, *fn, what);
    return 0;
  }
  for (size_t i = 0; i < count; i++) argv[i] = all[i];
  return 1;
}

// Reads the heap view and exactly `want` integer arguments after it.
static int read_args(napi_env env, napi_callback_info info, size_t want, uint8_t **heap, int64_t *ints) {
  napi_value argv[MAX_ARGS];
  const char *fn;
  if (!get_args(env, info, want + 1, argv, &fn)) return 0;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    throw_type_error(env, fn, "expected a Uint8Array over the heap first");
    return 0;
  }
  *heap = data;
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_int64(env, argv[i + 1], &ints[i]) != napi_ok) {
      throw_type_error(env, fn, "expected integer arguments after the heap");
      return 0;
    }
  }
  return 1;
}

// The heap and as many integers as `v` holds: the array's length is the count the function takes.
#define READ_ARGS(v) read_args(env, info, sizeof(v) / sizeof((v)[0]), &heap, (v))

static int pad16(int n) { return (n + 15) / 16 * 16; }

static float *alloc_floats(size_t n) {
  // Rounded up to whole 64-byte lines (aligned_alloc needs a multiple).
  const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  return aligned_alloc(64, bytes > 0 ? bytes : 64);
}

// Copies rows x cols into rows x ld (ld >= cols), zero-filling the extra columns.
static float *padded_copy(const float *src, long rows, int cols, int ld) {
  float *dst = alloc_floats((size_t)rows * ld);
  if (!dst) return NULL;
  for (long r = 0; r < rows; r++) {
    memcpy(dst + r * ld, src + r * cols, sizeof(float) * cols);
    memset(dst + r * ld + cols, 0, sizeof(float) * (ld - cols));
  }
  return dst;
}

static void copy_columns(float *dst, const float *src, long rows, int cols, int ld) {
  for (long r = 0; r < rows; r++) memcpy(dst + r * cols, src + r * ld, sizeof(float) * cols);
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value out_of_memory(napi_env env) {
  napi_throw_error(env, NULL, "image-classifier native: out of memory");
  return NULL;
}

#define F32(off) ((float *)(heap + (off)))

// Runs a forward convolution with filter rows already laid out as
// [taps*c][ldw] (ldw = pad16(f)); writes out [m][f].
static int forward(struct conv_args *a, const float *w, int f, const float *bias_src, float *out, int threads) {
  const int ldw = pad16(f);
  float *zeros = calloc((size_t)a->c + 16, sizeof(float));
  float *bias = bias_src ? padded_copy(bias_src, 1, f, ldw) : NULL;
  const long rows = (long)a->n * a->oh * a->ow;
  float *tmp = f == ldw ? out : alloc_floats((size_t)rows * ldw);
  int ok = zeros && tmp && (!bias_src || bias);
  if (ok) {
    a->zeros = zeros;
    ic_conv_forward(a, w, ldw, bias, tmp, ldw, threads);
    if (tmp != out) copy_columns(out, tmp, rows, f, ldw);
  }
  if (tmp != out) free(tmp);
  free(bias);
  free(zeros);
  return ok;
}

// convForward(heap, x, n, h, w, c, filter, kh, kw, f, sh, sw, pt, pl, oh, ow, bias (-1: none), relu, out, threads)
static napi_value conv_forward(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[19];
  if (!READ_ARGS(v)) return NULL;
  struct conv_args a = {F32(v[0]), NULL, (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[6], (int)v[7],
                        (int)v[9], (int)v[10], (int)v[11], (int)v[12], (int)v[13], (int)v[14], (int)v[16]};
  const int f = (int)v[8];
  float *w = padded_copy(F32(v[5]), (long)a.kh * a.kw * a.c, f, pad16(f));
  if (!w) return out_of_memory(env);
  const int ok = forward(&a, w, f, v[15] >= 0 ? F32(v[15]) : NULL, F32(v[17]), (int)v[18]);
  free(w);
  return ok ? undefined(env) : out_of_memory(env);
}

// convBackpropInput(heap, dy, n, oh, ow, f, filter, kh, kw, c, pt, pl, h, w, dx, threads, sh, sw).
// With 16 or more input channels and stride 1: the forward convolution of dy with the filter rotated
// by 180 degrees, in and out channels swapped. Otherwise (few channels would leave most of the
// 16-wide tiles empty; strides): dy times the transposed filter gives each pixel's contribution to
// its kh*kw input pixels (a GEMM with kh*kw*c columns), added into them image by image.
static napi_value conv_backprop_input(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[17];
  if (!READ_ARGS(v)) return NULL;
  const int n = (int)v[1], oh = (int)v[2], ow = (int)v[3], f = (int)v[4];
  const int kh = (int)v[6], kw = (int)v[7], c = (int)v[8], pt = (int)v[9], pl = (int)v[10];
  const int h = (int)v[11], w = (int)v[12], threads = (int)v[14], sh = (int)v[15], sw = (int)v[16];
  const float *filter = F32(v[5]);
  float *dx = F32(v[13]);
  if (c < 16 || sh != 1 || sw != 1) {
    const int k = kh * kw * c, ldc = pad16(k);
    // filter [k][f] -> [f][ldc]
    float *wt = alloc_floats((size_t)f * ldc);
    if (!wt) return out_of_memory(env);
    for (int fo = 0; fo < f; fo++) {
      for (int j = 0; j < k; j++) wt[(long)fo * ldc + j] = filter[(long)j * f + fo];
      for (int j = k; j < ldc; j++) wt[(long)fo * ldc + j] = 0;
    }
    struct conv_args a = {NULL, NULL, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, 0};
    const int ok = ic_input_grad_by_columns(&a, F32(v[0]), f, wt, ldc, dx, threads);
    free(wt);
    return ok ? undefined(env) : out_of_memory(env);
  }
  const int ldw = pad16(c);
  float *wt = alloc_floats((size_t)kh * kw * f * ldw);
  if (!wt) return out_of_memory(env);
  for (int ky = 0; ky < kh; ky++)
    for (int kx = 0; kx < kw; kx++)
      for (int fo = 0; fo < f; fo++) {
        float *row = wt + (((long)ky * kw + kx) * f + fo) * ldw;
        const float *src = filter + ((long)(kh - 1 - ky) * kw + (kw - 1 - kx)) * c * f + fo;
        for (int ci = 0; ci < c; ci++) row[ci] = src[(long)ci * f];
        for (int ci = c; ci < ldw; ci++) row[ci] = 0;
      }
  struct conv_args a = {F32(v[0]), NULL, n, oh, ow, f, kh, kw, 1, 1, kh - 1 - pt, kw - 1 - pl, h, w, 0};
  const int ok = forward(&a, wt, c, NULL, dx, threads);
  free(wt);
  return ok ? undefined(env) : out_of_memory(env);
}

// Runs the filter-gradient kernel with dy [rows][f]; writes dw [taps*c][f].
static int filter_grad(const struct conv_args *a, const float *dy, int f, float *dw, int threads) {
  const int ldw = pad16(f);
  const long rows = (long)a->n * a->oh * a->ow;
  const long wrows = (long)a->kh * a->kw * a->c;
  float *dyp = f == ldw ? (float *)dy : padded_copy(dy, rows, f, ldw);
  float *tmp = f == ldw ? dw : alloc_floats((size_t)wrows * ldw);
  const int ok = dyp && tmp;
  if (ok) {
    ic_conv_filter(a, dyp, ldw, tmp, ldw, threads);
    if (tmp != dw) copy_columns(dw, tmp, wrows, f, ldw);
  }
  if (dyp != dy) free(dyp);
  if (tmp != dw) free(tmp);
  return ok;
}

// convBackpropFilter(heap, x, n, h, w, c, dy, oh, ow, f, kh, kw, sh, sw, pt, pl, dw, threads)
static napi_value conv_backprop_filter(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[17];
  if (!READ_ARGS(v)) return NULL;
  struct conv_args a = {F32(v[0]), NULL, (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[9], (int)v[10],
                        (int)v[11], (int)v[12], (int)v[13], (int)v[14], (int)v[6], (int)v[7], 0};
  const int ok = filter_grad(&a, F32(v[5]), (int)v[8], F32(v[15]), (int)v[16]);
  return ok ? undefined(env) : out_of_memory(env);
}

// matMul(heap, a, b, out, m, k, n, transposeA, transposeB, bias (-1: none), relu, threads):
// out [m][n] = op(a) op(b) (+ bias, ReLU). Not both transposed.
static napi_value mat_mul(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[11];
  if (!READ_ARGS(v)) return NULL;
  const float *A = F32(v[0]), *B = F32(v[1]);
  float *out = F32(v[2]);
  const int m = (int)v[3], k = (int)v[4], n = (int)v[5], ta = (int)v[6], tb = (int)v[7], relu = (int)v[9];
  const float *bias = v[8] >= 0 ? F32(v[8]) : NULL;
  const int threads = (int)v[10];
  int ok;
  if (ta) {
    // out[i][j] = sum_p a[p][i] b[p][j]: the filter gradient of a 1x1 convolution over k "pixels".
    struct conv_args a = {A, NULL, k, 1, 1, m, 1, 1, 1, 1, 0, 0, 1, 1, 0};
    ok = filter_grad(&a, B, n, out, threads);
  } else {
    // A 1x1 convolution of m "pixels" with k channels; b laid out as [k][pad16(n)] rows.
    const int ldw = pad16(n);
    float *w = alloc_floats((size_t)k * ldw);
    if (!w) return out_of_memory(env);
    for (int p = 0; p < k; p++) {
      for (int j = 0; j < n; j++) w[(long)p * ldw + j] = tb ? B[(long)j * k + p] : B[(long)p * n + j];
      for (int j = n; j < ldw; j++) w[(long)p * ldw + j] = 0;
    }
    struct conv_args a = {A, NULL, m, 1, 1, k, 1, 1, 1, 1, 0, 0, 1, 1, relu};
    ok = forward(&a, w, n, bias, out, threads);
    free(w);
  }
  return ok ? undefined(env) : out_of_memory(env);
}

#define F64(off) ((double *)(heap + (off)))

// bnStats(heap, x, rows, c, sum, sumSq, threads): float64 sums onto sum and sumSq.
static napi_value bn_stats(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[6];
  if (!READ_ARGS(v)) return NULL;
  if (!ic_bn_stats(F32(v[0]), v[1], (int)v[2], F64(v[3]), F64(v[4]), (int)v[5])) return out_of_memory(env);
  return undefined(env);
}

// bnApply(heap, x, y, rows, c, scale, shift, threads)
static napi_value bn_apply(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[7];
  if (!READ_ARGS(v)) return NULL;
  ic_bn_apply(F32(v[0]), F32(v[1]), v[2], (int)v[3], F32(v[4]), F32(v[5]), (int)v[6]);
  return undefined(env);
}

// bnGradStats(heap, dy, x, mean, rows, c, sumDy, sumDyXc, threads)
static napi_value bn_grad_stats(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[8];
  if (!READ_ARGS(v)) return NULL;
  if (!ic_bn_grad_stats(F32(v[0]), F32(v[1]), F32(v[2]), v[3], (int)v[4], F64(v[5]), F64(v[6]), (int)v[7]))
    return out_of_memory(env);
  return undefined(env);
}

// bnGradApply(heap, dy, x, dx, rows, c, a, b, mean, d, threads)
static napi_value bn_grad_apply(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[10];
  if (!READ_ARGS(v)) return NULL;
  ic_bn_grad_apply(F32(v[0]), F32(v[1]), F32(v[2]), v[3], (int)v[4], F32(v[5]), F32(v[6]), F32(v[7]), F32(v[8]),
                   (int)v[9]);
  return undefined(env);
}

// relu(heap, x, y, n, threads)
static napi_value relu(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[4];
  if (!READ_ARGS(v)) return NULL;
  ic_relu(F32(v[0]), F32(v[1]), v[2], (int)v[3]);
  return undefined(env);
}

// reluGrad(heap, dy, x, dx, n, threads)
static napi_value relu_grad(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[5];
  if (!READ_ARGS(v)) return NULL;
  ic_relu_grad(F32(v[0]), F32(v[1]), F32(v[2]), v[3], (int)v[4]);
  return undefined(env);
}

// maxPool(heap, x, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, y, threads)
static napi_value max_pool(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[15];
  if (!READ_ARGS(v)) return NULL;
  struct conv_args a = {NULL, NULL, (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5], (int)v[6],
                        (int)v[7], (int)v[8], (int)v[9], (int)v[10], (int)v[11], (int)v[12], 0};
  ic_max_pool(&a, F32(v[0]), F32(v[13]), (int)v[14]);
  return undefined(env);
}

// maxPoolGrad(heap, x, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, y, dy, dx, threads)
static napi_value max_pool_grad(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  int64_t v[17];
  if (!READ_ARGS(v)) return NULL;
  struct conv_args a = {NULL, NULL, (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5], (int)v[6],
                        (int)v[7], (int)v[8], (int)v[9], (int)v[10], (int)v[11], (int)v[12], 0};
  if (!ic_max_pool_grad(&a, F32(v[0]), F32(v[13]), F32(v[14]), F32(v[15]), (int)v[16])) return out_of_memory(env);
  return undefined(env);
}

// isa(): 2 AVX-512, 1 AVX2+FMA, 0 neither. useIsa(n): restrict to n (-1: best); returns the one used.
static napi_value isa(napi_env env, napi_callback_info info) {
  const char *fn;
  if (!get_args(env, info, 0, NULL, &fn)) return NULL;
  napi_value r;
  napi_create_int32(env, ic_isa(), &r);
  return r;
}

static napi_value use_isa(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  const char *fn;
  int32_t want;
  if (!get_args(env, info, 1, argv, &fn)) return NULL;
  if (napi_get_value_int32(env, argv[0], &want) != napi_ok) {
    throw_type_error(env, fn, "expected an integer");
    return NULL;
  }
  napi_value r;
  napi_create_int32(env, ic_use_isa(want), &r);
  return r;
}

NAPI_MODULE_INIT() {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"convForward", conv_forward},
             {"convBackpropInput", conv_backprop_input},
             {"convBackpropFilter", conv_backprop_filter},
             {"matMul", mat_mul},
             {"bnStats", bn_stats},
             {"bnApply", bn_apply},
             {"bnGradStats", bn_grad_stats},
             {"bnGradApply", bn_grad_apply},
             {"relu", relu},
             {"maxPool", max_pool},
             {"maxPoolGrad", max_pool_grad},
             {"reluGrad", relu_grad},
             {"isa", isa},
             {"useIsa", use_isa}};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value fn;
    // The name is the callback's data: argument errors say which function was called.
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, (void *)fns[i].name, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}
