// Batch-norm training passes for the native backend. They stream the activations (tens of MB on
// VGG's first layers), so what matters is running on every core with wide vectors; the wasm
// versions run on one thread with 128-bit vectors.
//
// Determinism: a channel's sums are chains over fixed row chunks, added in chunk order (see
// CHUNKED_SUMS); elementwise passes split rows. Sums of float32 values and their exact products
// in float64 do not depend on the vector width, and the elementwise passes use fused multiply-adds
// in both builds: the same bits with AVX2 and AVX-512 and any thread count.
#include "batch-norm.h"

#include <omp.h>
#include <stdlib.h>

#include "conv.h"

// Each pass is built for both instruction sets (the loops are left to the compiler to vectorise).
#define BN_PASSES(SFX)                                                                                      \
  static void stats_##SFX(const float *restrict x, long rows, int c, double *restrict sum,                \
                          double *restrict sum_sq, int j0, int j1) {                                      \
    for (long r = 0; r < rows; r++) {                                                                       \
      const float *xr = x + r * c;                                                                          \
      for (int j = j0; j < j1; j++) {                                                                       \
        const double v = xr[j];                                                                             \
        sum[j] += v;                                                                                        \
        sum_sq[j] += v * v;                                                                                 \
      }                                                                                                     \
    }                                                                                                       \
  }                                                                                                         \
  static void grad_stats_##SFX(const float *dy, const float *x, const float *mean, long rows, int c,        \
                               double *sum_dy, double *sum_dy_xc, int j0, int j1) {                         \
    for (long r = 0; r < rows; r++) {                                                                       \
      const float *dr = dy + r * c, *xr = x + r * c;                                                        \
      for (int j = j0; j < j1; j++) {                                                                       \
        const double g = dr[j];                                                                             \
        sum_dy[j] += g;                                                                                     \
        sum_dy_xc[j] += g * ((double)xr[j] - (double)mean[j]);                                              \
      }                                                                                                     \
    }                                                                                                       \
  }                                                                                                         \
  static void apply_##SFX(const float *x, float *y, long r0, long r1, int c, const float *scale,            \
                          const float *shift) {                                                             \
    for (long r = r0; r < r1; r++) {                                                                        \
      const float *xr = x + r * c;                                                                          \
      float *yr = y + r * c;                                                                                \
      for (int j = 0; j < c; j++) yr[j] = xr[j] * scale[j] + shift[j];                                      \
    }                                                                                                       \
  }                                                                                                         \
  static void grad_apply_##SFX(const float *dy, const float *x, float *dx, long r0, long r1, int c,         \
                               const float *a, const float *b, const float *mean, const float *d) {         \
    for (long r = r0; r < r1; r++) {                                                                        \
      const float *dr = dy + r * c, *xr = x + r * c;                                                        \
      float *o = dx + r * c;                                                                                \
      for (int j = 0; j < c; j++) o[j] = a[j] * dr[j] + (b[j] * (xr[j] - mean[j]) + d[j]);                  \
    }                                                                                                       \
  }

#pragma GCC push_options
#pragma GCC target("avx2,fma")
BN_PASSES(avx2)
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
BN_PASSES(avx512)
#pragma GCC pop_options

// Below this many elements one thread is faster than waking another (~0.1 ms).
static int threads_for(long elements, int threads) { return elements < (1L << 18) ? 1 : threads; }

// The sums run over CHUNKS fixed row ranges, each summed in order into its own partial sums, then
// the partials are added in chunk order: the result does not depend on the thread count. (Splitting
// channels between threads instead was 6x slower on 2 threads: both cores streamed every row.)
#define CHUNKS 16

// Runs `pass(chunk rows, partial sums)` over the chunks on the threads, then adds the partials.
#define CHUNKED_SUMS(rows, c, out1, out2, threads, PASS)                                                   \
  do {                                                                                                     \
    double *partial = calloc((size_t)CHUNKS * 2 * (c), sizeof(double));                                    \
    if (!partial) return 0;                                                                                \
    _Pragma("omp parallel for schedule(static) num_threads(threads_for((rows) * (c), threads))")           \
    for (int k = 0; k < CHUNKS; k++) {                                                                     \
      const long r0 = (rows) * k / CHUNKS, r1 = (rows) * (k + 1) / CHUNKS;                                 \
      double *p1 = partial + (size_t)k * 2 * (c), *p2 = p1 + (c);                                          \
      PASS;                                                                                                \
    }                                                                                                      \
    for (int k = 0; k < CHUNKS; k++)                                                                       \
      for (int j = 0; j < (c); j++) {                                                                      \
        (out1)[j] += partial[(size_t)k * 2 * (c) + j];                                                     \
        (out2)[j] += partial[(size_t)k * 2 * (c) + (c) + j];                                               \
      }                                                                                                    \
    free(partial);                                                                                         \
    return 1;                                                                                              \
  } while (0)

int ic_bn_stats(const float *x, long rows, int c, double *sum, double *sum_sq, int threads) {
  const int wide = ic_current_isa() == 2;
  CHUNKED_SUMS(rows, c, sum, sum_sq, threads,
               if (wide) stats_avx512(x + r0 * c, r1 - r0, c, p1, p2, 0, c);
               else stats_avx2(x + r0 * c, r1 - r0, c, p1, p2, 0, c));
}

int ic_bn_grad_stats(const float *dy, const float *x, const float *mean, long rows, int c, double *sum_dy,
                     double *sum_dy_xc, int threads) {
  const int wide = ic_current_isa() == 2;
  CHUNKED_SUMS(rows, c, sum_dy, sum_dy_xc, threads,
               if (wide) grad_stats_avx512(dy + r0 * c, x + r0 * c, mean, r1 - r0, c, p1, p2, 0, c);
               else grad_stats_avx2(dy + r0 * c, x + r0 * c, mean, r1 - r0, c, p1, p2, 0, c));
}

void ic_bn_apply(const float *x, float *y, long rows, int c, const float *scale, const float *shift, int threads) {
  const int wide = ic_current_isa() == 2;
#pragma omp parallel num_threads(threads_for(rows * c, threads))
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const long r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    if (wide)
      apply_avx512(x, y, r0, r1, c, scale, shift);
    else
      apply_avx2(x, y, r0, r1, c, scale, shift);
  }
}

void ic_bn_grad_apply(const float *dy, const float *x, float *dx, long rows, int c, const float *a, const float *b,
                      const float *mean, const float *d, int threads) {
  const int wide = ic_current_isa() == 2;
#pragma omp parallel num_threads(threads_for(rows * c, threads))
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const long r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    if (wide)
      grad_apply_avx512(dy, x, dx, r0, r1, c, a, b, mean, d);
    else
      grad_apply_avx2(dy, x, dx, r0, r1, c, a, b, mean, d);
  }
}
