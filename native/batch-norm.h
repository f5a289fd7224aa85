// Batch-norm training kernels of the native backend (see batch-norm.c): x is [rows][c], float32;
// the statistics are float64 sums, accumulated onto what the caller's buffers hold (the sums return 0
// when out of memory).
#ifndef IMAGE_CLASSIFIER_BATCH_NORM_H
#define IMAGE_CLASSIFIER_BATCH_NORM_H

// sum[j] += sum_r x[r][j]; sum_sq[j] += sum_r x[r][j]^2
int ic_bn_stats(const float *x, long rows, int c, double *sum, double *sum_sq, int threads);
// y[r][j] = x[r][j] * scale[j] + shift[j]
void ic_bn_apply(const float *x, float *y, long rows, int c, const float *scale, const float *shift, int threads);
// sum_dy[j] += sum_r dy[r][j]; sum_dy_xc[j] += sum_r dy[r][j] * (x[r][j] - mean[j])
int ic_bn_grad_stats(const float *dy, const float *x, const float *mean, long rows, int c, double *sum_dy,
                      double *sum_dy_xc, int threads);
// dx[r][j] = a[j] * dy[r][j] + b[j] * (x[r][j] - mean[j]) + d[j]
void ic_bn_grad_apply(const float *dy, const float *x, float *dx, long rows, int c, const float *a, const float *b,
                      const float *mean, const float *d, int threads);

#endif
