// Convolution and matrix-multiply kernels for image-classifier's `native`
// backend: the tfjs wasm backend's heap, computed on with AVX2/AVX-512 fused
// multiply-adds and OpenMP threads. The hot loops are in conv-tiles.h, built
// here once per instruction set; the CPU picks one at run time.
//
// Determinism: each output element is one fused multiply-add chain in a
// fixed order; threads split outputs, never a sum. Same inputs, same bits,
// whatever the thread count or instruction set.
#include "conv.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

int ic_row_mode(const struct conv_args *a) {
  return a->pl == 0 && (long)(a->ow - 1) * a->sw + a->kw <= a->w;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")
// One vbroadcastss from memory. (GCC's vector idiom `(V){0} + x` adds zero first, which it may not
// drop, as -0 + 0 is +0: a scalar add and a register broadcast per step of the hot loops.)
static inline __m256 splat_avx2(float x) { return _mm256_set1_ps(x); }
#define VL 8
#define MR 6
#define SFX(name) name##_avx2
#include "conv-tiles.h"
#undef VL
#undef MR
#undef SFX
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
static inline __m512 splat_avx512(float x) { return _mm512_set1_ps(x); }
#define VL 16
#define MR 12
#define SFX(name) name##_avx512
#include "conv-tiles.h"
#undef VL
#undef MR
#undef SFX
#pragma GCC pop_options

int ic_isa(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
  return 0;
}

static int isa_in_use = -1;

int ic_use_isa(int isa) {
  const int best = ic_isa();
  isa_in_use = isa < 0 || isa > best ? best : isa;
  return isa_in_use;
}

int ic_current_isa(void) {
  if (isa_in_use < 0) ic_use_isa(-1);
  return isa_in_use;
}

static int mr_of(int isa) { return isa == 2 ? 12 : 6; }

// Waking a sleeping OpenMP thread costs ~0.1 ms here (passive waiting, which the JavaScript side asks
// for so idle threads leave the cores to the wasm backend's): below ~16 M multiply-adds one thread is
// faster (a dense layer's 64x400x120 product: 0.11 ms on one thread, 0.19 ms on two).
static int threads_for(double macs, int threads) { return macs < 16e6 ? 1 : threads; }

void ic_conv_forward(const struct conv_args *a, const float *w, int ldw, const float *bias, float *out, int ldo,
                     int threads) {
  const int isa = ic_current_isa();
  const long rows = (long)a->n * a->oh * a->ow;
  const int mr = mr_of(isa);
  const long tiles = (rows + mr - 1) / mr;
  threads = threads_for((double)rows * a->kh * a->kw * a->c * ldw, threads);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const long m0 = tiles * t / nt * mr;
    long m1 = tiles * (t + 1) / nt * mr;
    if (m1 > rows) m1 = rows;
    if (m0 < m1) {
      if (isa == 2)
        conv_forward_rows_avx512(a, w, ldw, bias, out, ldo, m0, m1);
      else
        conv_forward_rows_avx2(a, w, ldw, bias, out, ldo, m0, m1);
    }
  }
}

void ic_conv_filter(const struct conv_args *a, const float *dy, int ldd, float *dw, int ldw, int threads) {
  const int isa = ic_current_isa();
  const int mr = mr_of(isa);
  const int vl = isa == 2 ? 16 : 8;
  // Row mode (see conv_forward_rows): kernel rows of kw*c contiguous channels; dW's rows keep their order.
  const int row_mode = ic_row_mode(a);
  const int taps = row_mode ? a->kh : a->kh * a->kw;
  const int cc = row_mode ? a->kw * a->c : a->c;
  const int kw = row_mode ? 1 : a->kw;
  const int cblocks = (cc + mr - 1) / mr;
  const int fblocks = (ldw + 2 * vl - 1) / (2 * vl);
  const long items = (long)taps * cblocks * fblocks;
  // Images per pass: about 256 pixels, so x and dy of a pass stay in cache
  // while every work item of the thread runs over them.
  const long pix = (long)a->oh * a->ow;
  const long chunk = pix >= 256 ? 1 : 256 / (pix > 0 ? pix : 1);
  threads = threads_for((double)a->n * pix * taps * cc * ldw, threads);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const long i0 = items * t / nt, i1 = items * (t + 1) / nt;
    for (long n0 = 0; n0 < a->n; n0 += chunk) {
      const long n1 = n0 + chunk < a->n ? n0 + chunk : a->n;
      for (long it = i0; it < i1; it++) {
        const int fb = (int)(it % fblocks);
        const int cb = (int)(it / fblocks % cblocks);
        const int tap = (int)(it / fblocks / cblocks);
        const int ky = tap / kw, kx = tap % kw;
        const int c0 = cb * mr;
        const int rows = cc - c0 < mr ? cc - c0 : mr;
        const int f = fb * 2 * vl;
        const int nv = ldw - f >= 2 * vl ? 2 : 1;
        float *d = dw + ((long)tap * cc + c0) * ldw + f;
        if (isa == 2)
          filter_item_avx512(a, ky, kx, c0, rows, nv, dy + f, ldd, d, ldw, n0, n1, n0 == 0);
        else
          filter_item_avx2(a, ky, kx, c0, rows, nv, dy + f, ldd, d, ldw, n0, n1, n0 == 0);
      }
    }
    // Taps that no pixel reads (a filter larger than the padded input) keep zeros.
  }
}

int ic_input_grad_by_columns(const struct conv_args *a, const float *dy, int f, const float *wt, int ldc,
                             float *dx, int threads) {
  const long image = (long)a->h * a->w * a->c, pix = (long)a->oh * a->ow;
  threads = threads_for((double)a->n * pix * f * ldc, threads);
  float *zeros = calloc((size_t)f + 16, sizeof(float));
  if (!zeros) return 0;
  int failed = 0;
  // Threads take whole images: an image's columns (pix x ldc floats, 128 KB for VGG's first layer)
  // are computed into a buffer that stays in cache, then added into its input pixels in a fixed
  // order (oy, ox, ky, kx). Writing all columns first and adding them later streamed 3x the memory.
#pragma omp parallel num_threads(threads)
  {
    float *cols = malloc(sizeof(float) * (size_t)pix * ldc);
#pragma omp for schedule(static)
    for (long n = 0; n < a->n; n++) {
      if (!cols) {
        failed = 1;
        continue;
      }
      const struct conv_args g = {dy + n * pix * f, zeros, 1, a->oh, a->ow, f, 1, 1, 1, 1, 0, 0, a->oh, a->ow, 0};
      if (ic_current_isa() == 2)
        conv_forward_rows_avx512(&g, wt, ldc, NULL, cols, ldc, 0, pix);
      else
        conv_forward_rows_avx2(&g, wt, ldc, NULL, cols, ldc, 0, pix);
      float *img = dx + n * image;
      for (long i = 0; i < image; i++) img[i] = 0;
      for (int oy = 0; oy < a->oh; oy++)
        for (int ox = 0; ox < a->ow; ox++) {
          const float *col = cols + ((long)oy * a->ow + ox) * ldc;
          for (int ky = 0; ky < a->kh; ky++) {
            const int iy = oy * a->sh + ky - a->pt;
            if (iy < 0 || iy >= a->h) continue;
            for (int kx = 0; kx < a->kw; kx++) {
              const int ix = ox * a->sw + kx - a->pl;
              if (ix < 0 || ix >= a->w) continue;
              float *d = img + ((long)iy * a->w + ix) * a->c;
              const float *src = col + (ky * a->kw + kx) * a->c;
              for (int ci = 0; ci < a->c; ci++) d[ci] += src[ci];
            }
          }
        }
    }
    free(cols);
  }
  free(zeros);
  return !failed;
}
