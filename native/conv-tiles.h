// The register-tiled loops behind native/conv.c, written once and compiled
// once per instruction set (conv.c includes this file under different
// `#pragma GCC target`s with VL, MR and SFX set). Every output element is one
// chain of fused multiply-adds over its reduction index in a fixed order, so
// the AVX2 and AVX-512 builds, and any thread count, give the same bits.
//
// VL: floats per vector. MR: output rows per tile (AVX-512 has 32 vector
// registers: 12 rows x 2 vectors = 24 accumulators; AVX2 has 16: 6 x 2).

typedef float SFX(vf) __attribute__((vector_size(VL * 4)));
typedef int SFX(vi) __attribute__((vector_size(VL * 4)));
// Same vector, 4-byte alignment: loads and stores that need not be aligned.
typedef float SFX(vfu) __attribute__((vector_size(VL * 4), aligned(4)));

#define V SFX(vf)
#define LOADV(p) (*(const SFX(vfu) *)(p))
#define STOREV(p, v) (*(SFX(vfu) *)(p) = (v))

// MR rows x nv vectors of `out` (row stride ldo) from a chain over taps and
// channels: out[i][j] = sum_{t,c} src_t(i)[c] * w[(t*C + c)*ldw + j] (+ bias,
// then ReLU); only the first `rows` rows are stored. `ptrs[t*MR + i]` is row
// i's input pointer for tap t (a zero row where the tap falls in the padding).
static inline __attribute__((always_inline)) void SFX(fwd_tile)(int nv, const float *const *ptrs, int taps, int C,
                                                                const float *w, int ldw, const float *bias, int relu,
                                                                float *out, int ldo, int rows) {
  V acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    acc[i][0] = (V){0};
    acc[i][1] = (V){0};
  }
  for (int t = 0; t < taps; t++) {
    const float *const *p = ptrs + t * MR;
    const float *wt = w + (long)t * C * ldw;
    for (int c = 0; c < C; c++) {
      const V b0 = LOADV(wt + (long)c * ldw);
      const V b1 = nv == 2 ? LOADV(wt + (long)c * ldw + VL) : (V){0};
#pragma GCC unroll 16
      for (int i = 0; i < MR; i++) {
        const V a = SFX(splat)(p[i][c]);
        acc[i][0] += a * b0;
        if (nv == 2) acc[i][1] += a * b1;
      }
    }
  }
  const V b0 = bias ? LOADV(bias) : (V){0};
  const V b1 = bias && nv == 2 ? LOADV(bias + VL) : (V){0};
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    if (i < rows) {
      V r0 = acc[i][0] + b0;
      V r1 = acc[i][1] + b1;
      if (relu) {
        // Comparisons give all-ones lanes where true: keep those, zero the rest.
        r0 = (V)((SFX(vi))r0 & (r0 > 0));
        r1 = (V)((SFX(vi))r1 & (r1 > 0));
      }
      STOREV(out + (long)i * ldo, r0);
      if (nv == 2) STOREV(out + (long)i * ldo + VL, r1);
    }
  }
}

// Forward convolution over output rows [m0, m1) (NHWC, filter [taps*C][ldw],
// ldw a multiple of 16): out[m][f] for f < ldw, row stride ldo.
static void SFX(conv_forward_rows)(const struct conv_args *a, const float *w, int ldw, const float *bias, float *out,
                                   int ldo, long m0, long m1) {
  // Row mode (no column padding): a kernel row's kw taps read kw*c contiguous floats, which the tile
  // takes as one tap of kw*c channels (net's 5x5 RGB layer: 5 taps of 15 instead of 25 of 3).
  const int row_mode = ic_row_mode(a);
  const int taps = row_mode ? a->kh : a->kh * a->kw;
  const int cc = row_mode ? a->kw * a->c : a->c;
  const int kw = row_mode ? 1 : a->kw;
  const float *ptrs[taps * MR];
  const long pix = (long)a->oh * a->ow;
  // Offset of each tap from a pixel's top-left input element.
  long tap_off[taps];
  for (int ky = 0; ky < a->kh; ky++)
    for (int kx = 0; kx < kw; kx++) tap_off[ky * kw + kx] = ((long)ky * a->w + kx) * a->c;
  for (long m = m0; m < m1; m += MR) {
    const int rows = m1 - m < MR ? (int)(m1 - m) : MR;
    // The tile's first output pixel; the next rows step through it without dividing.
    long n = m / pix;
    int oy = (int)(m % pix) / a->ow, ox = (int)(m % pix) % a->ow;
    for (int i = 0; i < MR; i++) {
      // Rows past the end repeat the tile's last row (computed, not stored).
      if (i > 0 && i < rows && ++ox == a->ow) {
        ox = 0;
        if (++oy == a->oh) {
          oy = 0;
          n++;
        }
      }
      const int by = oy * a->sh - a->pt, bx = ox * a->sw - a->pl;
      const float *base = a->x + ((n * a->h + by) * a->w + bx) * a->c;
      if (by >= 0 && by + a->kh <= a->h && bx >= 0 && bx + a->kw <= a->w) {
        // Every tap inside the input: no checks.
        for (int t = 0; t < taps; t++) ptrs[t * MR + i] = base + tap_off[t];
      } else {
        for (int ky = 0; ky < a->kh; ky++) {
          const int row_in = (unsigned)(by + ky) < (unsigned)a->h;
          for (int kx = 0; kx < kw; kx++) {
            const int t = ky * kw + kx;
            const int inside = row_in && (row_mode || (unsigned)(bx + kx) < (unsigned)a->w);
            ptrs[t * MR + i] = inside ? base + tap_off[t] : a->zeros;
          }
        }
      }
    }
    for (int f = 0; f < ldw; f += 2 * VL) {
      const float *bf = bias ? bias + f : NULL;
      float *o = out + m * ldo + f;
      if (ldw - f >= 2 * VL)
        SFX(fwd_tile)(2, ptrs, taps, cc, w + f, ldw, bf, a->relu, o, ldo, rows);
      else
        SFX(fwd_tile)(1, ptrs, taps, cc, w + f, ldw, bf, a->relu, o, ldo, rows);
    }
  }
}

// rows x NV vectors of dW: dw[i][j] (+)= sum over pixels p of src_p[i] * dy_p[j],
// for the pixels of images [n0, n1) that tap (ky, kx) reads; continues the
// chain from dw's current values unless `first`.
static inline __attribute__((always_inline)) void SFX(filter_tile)(int rows, int nv, const struct conv_args *a,
                                                                   int ky, int kx, int c0, const float *dy, int ldd,
                                                                   float *dw, int ldw, long n0, long n1, int first) {
  V acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    acc[i][0] = first || i >= rows ? (V){0} : LOADV(dw + (long)i * ldw);
    acc[i][1] = first || i >= rows || nv == 1 ? (V){0} : LOADV(dw + (long)i * ldw + VL);
  }
  // Output rows whose tap lands inside the input (the same for every image).
  int oy0 = 0, oy1 = a->oh, ox0 = 0, ox1 = a->ow;
  while (oy0 < oy1 && oy0 * a->sh + ky - a->pt < 0) oy0++;
  while (oy1 > oy0 && (oy1 - 1) * a->sh + ky - a->pt >= a->h) oy1--;
  while (ox0 < ox1 && ox0 * a->sw + kx - a->pl < 0) ox0++;
  while (ox1 > ox0 && (ox1 - 1) * a->sw + kx - a->pl >= a->w) ox1--;
  for (long n = n0; n < n1; n++) {
    for (int oy = oy0; oy < oy1; oy++) {
      const int iy = oy * a->sh + ky - a->pt;
      const float *xr = a->x + ((n * a->h + iy) * a->w) * a->c + c0;
      const float *dr = dy + ((n * a->oh + oy) * a->ow) * (long)ldd;
      for (int ox = ox0; ox < ox1; ox++) {
        const float *px = xr + (long)(ox * a->sw + kx - a->pl) * a->c;
        const float *pd = dr + (long)ox * ldd;
        const V d0 = LOADV(pd);
        const V d1 = nv == 2 ? LOADV(pd + VL) : (V){0};
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
          if (i < rows) {
            const V s = SFX(splat)(px[i]);
            acc[i][0] += s * d0;
            if (nv == 2) acc[i][1] += s * d1;
          }
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    if (i < rows) {
      STOREV(dw + (long)i * ldw, acc[i][0]);
      if (nv == 2) STOREV(dw + (long)i * ldw + VL, acc[i][1]);
    }
  }
}

#define FILTER_ROWS_CASE(R)                                                                            \
  case R:                                                                                              \
    if (nv == 2)                                                                                       \
      SFX(filter_tile)(R, 2, a, ky, kx, c0, dy, ldd, dw, ldw, n0, n1, first);                          \
    else                                                                                               \
      SFX(filter_tile)(R, 1, a, ky, kx, c0, dy, ldd, dw, ldw, n0, n1, first);                          \
    break;

// One work item of the filter gradient: tap (ky, kx), channels [c0, c0+rows),
// columns [f, f + nv*VL) of dW ([taps*C][ldw]), over images [n0, n1).
static void SFX(filter_item)(const struct conv_args *a, int ky, int kx, int c0, int rows, int nv, const float *dy,
                             int ldd, float *dw, int ldw, long n0, long n1, int first) {
  switch (rows) {
    FILTER_ROWS_CASE(1)
    FILTER_ROWS_CASE(2)
    FILTER_ROWS_CASE(3)
    FILTER_ROWS_CASE(4)
    FILTER_ROWS_CASE(5)
    FILTER_ROWS_CASE(6)
#if MR > 6
    FILTER_ROWS_CASE(7)
    FILTER_ROWS_CASE(8)
    FILTER_ROWS_CASE(9)
    FILTER_ROWS_CASE(10)
    FILTER_ROWS_CASE(11)
    FILTER_ROWS_CASE(12)
#endif
    default:
      break;
  }
}

#undef FILTER_ROWS_CASE
#undef V
#undef LOADV
#undef STOREV
