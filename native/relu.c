// ReLU and its gradient for the native backend: one threaded pass each over activations of tens of
// MB (tfjs computes the gradient as Step, then Multiply: two passes, the first single-threaded).
// The gradient is dy * (x > 0 ? 1 : 0), the same bits as tfjs's formulation (NaN and -0 included).
#include "relu.h"

#include <omp.h>

#define RELU_PASSES(SFX)                                                                                   \
  static void relu_##SFX(const float *restrict x, float *restrict y, long i0, long i1) {                  \
    for (long i = i0; i < i1; i++) y[i] = x[i] > 0 ? x[i] : 0;                                             \
  }                                                                                                        \
  static void relu_grad_##SFX(const float *restrict dy, const float *restrict x, float *restrict dx, long i0, \
                              long i1) {                                                                   \
    for (long i = i0; i < i1; i++) dx[i] = dy[i] * (x[i] > 0 ? 1.0f : 0.0f);                               \
  }

#pragma GCC push_options
#pragma GCC target("avx2,fma")
RELU_PASSES(avx2)
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
RELU_PASSES(avx512)
#pragma GCC pop_options

#include "conv.h"

// Below this many elements one thread is faster than waking another (~0.1 ms).
static int threads_for(long n, int threads) { return n < (1L << 18) ? 1 : threads; }

// Ranges end on 16-float boundaries so no two threads write one cache line.
#define RANGE(n, t, nt)                                                                                    \
  long i0 = (n) * (t) / (nt) / 16 * 16, i1 = (t) + 1 == (nt) ? (n) : (n) * ((t) + 1) / (nt) / 16 * 16;

void ic_relu(const float *x, float *y, long n, int threads) {
  const int wide = ic_current_isa() == 2;
#pragma omp parallel num_threads(threads_for(n, threads))
  {
    RANGE(n, omp_get_thread_num(), omp_get_num_threads())
    if (wide)
      relu_avx512(x, y, i0, i1);
    else
      relu_avx2(x, y, i0, i1);
  }
}

void ic_relu_grad(const float *dy, const float *x, float *dx, long n, int threads) {
  const int wide = ic_current_isa() == 2;
#pragma omp parallel num_threads(threads_for(n, threads))
  {
    RANGE(n, omp_get_thread_num(), omp_get_num_threads())
    if (wide)
      relu_grad_avx512(dy, x, dx, i0, i1);
    else
      relu_grad_avx2(dy, x, dx, i0, i1);
  }
}
