// Max pooling and its gradient for the native backend (NHWC, any window, stride and padding).
// The gradient goes to the first maximum of each window in row-major order (tfjs's rule), found
// as the first input equal to the pooled output. Non-overlapping windows that tile the input
// (VGG's and net's 2x2, stride 2) write every dx element once; otherwise dx is zeroed and the
// windows add in a fixed order. Threads take whole images.
#include "pool.h"

#include <math.h>
#include <omp.h>

#include "conv.h"

// Runs BODY for each input pixel (iy, ix) of output pixel (oy, ox)'s window that lies inside the input.
#define FOR_WINDOW(...)                                                                                   \
  for (int ky = 0; ky < a->kh; ky++) {                                                                    \
    const int iy = oy * a->sh + ky - a->pt;                                                               \
    if (iy < 0 || iy >= a->h) continue;                                                                   \
    for (int kx = 0; kx < a->kw; kx++) {                                                                  \
      const int ix = ox * a->sw + kx - a->pl;                                                             \
      if (ix < 0 || ix >= a->w) continue;                                                                 \
      __VA_ARGS__                                                                                         \
    }                                                                                                     \
  }

#define POOL_PASSES(SFX)                                                                                  \
  static void max_pool_##SFX(const struct conv_args *a, const float *restrict x, float *restrict y, long n) { \
    const float *xi = x + n * a->h * a->w * (long)a->c;                                                   \
    float *yi = y + n * a->oh * a->ow * (long)a->c;                                                       \
    for (int oy = 0; oy < a->oh; oy++)                                                                    \
      for (int ox = 0; ox < a->ow; ox++) {                                                                \
        float *o = yi + ((long)oy * a->ow + ox) * a->c;                                                   \
        for (int ci = 0; ci < a->c; ci++) o[ci] = -INFINITY;                                              \
        FOR_WINDOW({                                                                                      \
          const float *p = xi + ((long)iy * a->w + ix) * a->c;                                            \
          for (int ci = 0; ci < a->c; ci++) o[ci] = p[ci] > o[ci] ? p[ci] : o[ci];                        \
        })                                                                                                \
      }                                                                                                   \
  }                                                                                                       \
  static void max_pool_grad_##SFX(const struct conv_args *a, const float *restrict x, const float *restrict y, \
                                  const float *restrict dy, float *restrict dx, long n, int tiles, int *restrict found) { \
    const long image = a->h * a->w * (long)a->c;                                                          \
    const float *xi = x + n * image;                                                                      \
    float *di = dx + n * image;                                                                           \
    const long out = n * a->oh * a->ow * (long)a->c;                                                      \
    if (!tiles)                                                                                           \
      for (long i = 0; i < image; i++) di[i] = 0;                                                         \
    for (int oy = 0; oy < a->oh; oy++)                                                                    \
      for (int ox = 0; ox < a->ow; ox++) {                                                                \
        const float *m = y + out + ((long)oy * a->ow + ox) * a->c;                                        \
        const float *g = dy + out + ((long)oy * a->ow + ox) * a->c;                                       \
        for (int ci = 0; ci < a->c; ci++) found[ci] = 0;                                                  \
        FOR_WINDOW({                                                                                      \
          const long at = ((long)iy * a->w + ix) * a->c;                                                  \
          const float *restrict p = xi + at;                                                              \
          float *restrict d = di + at;                                                                    \
          if (tiles) {                                                                                    \
            for (int ci = 0; ci < a->c; ci++) {                                                           \
              const int hit = (found[ci] == 0) & (p[ci] == m[ci]);                                        \
              found[ci] |= hit;                                                                           \
              d[ci] = hit ? g[ci] : 0.0f;                                                                 \
            }                                                                                             \
          } else {                                                                                        \
            for (int ci = 0; ci < a->c; ci++) {                                                           \
              const int hit = (found[ci] == 0) & (p[ci] == m[ci]);                                        \
              found[ci] |= hit;                                                                           \
              d[ci] += hit ? g[ci] : 0.0f;                                                                \
            }                                                                                             \
          }                                                                                               \
        })                                                                                                \
      }                                                                                                   \
  }

#pragma GCC push_options
#pragma GCC target("avx2,fma")
POOL_PASSES(avx2)
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
POOL_PASSES(avx512)
#pragma GCC pop_options

static int threads_for(const struct conv_args *a, int threads) {
  return (long)a->n * a->h * a->w * a->c < (1L << 18) ? 1 : threads;
}

void ic_max_pool(const struct conv_args *a, const float *x, float *y, int threads) {
  const int wide = ic_current_isa() == 2;
#pragma omp parallel for schedule(static) num_threads(threads_for(a, threads))
  for (long n = 0; n < a->n; n++) {
    if (wide)
      max_pool_avx512(a, x, y, n);
    else
      max_pool_avx2(a, x, y, n);
  }
}

int ic_max_pool_grad(const struct conv_args *a, const float *x, const float *y, const float *dy, float *dx,
                     int threads) {
  const int wide = ic_current_isa() == 2;
  // Windows that tile the input exactly: each dx element is written by one window.
  const int tiles = a->kh == a->sh && a->kw == a->sw && a->pt == 0 && a->pl == 0 && a->oh * a->sh == a->h &&
                    a->ow * a->sw == a->w;
  int failed = 0;
#pragma omp parallel num_threads(threads_for(a, threads))
  {
    int *found = malloc(sizeof(int) * (size_t)(a->c > 0 ? a->c : 1));
#pragma omp for schedule(static)
    for (long n = 0; n < a->n; n++) {
      if (!found) {
        failed = 1;
        continue;
      }
      if (wide)
        max_pool_grad_avx512(a, x, y, dy, dx, n, tiles, found);
      else
        max_pool_grad_avx2(a, x, y, dy, dx, n, tiles, found);
    }
    free(found);
  }
  return !failed;
}
