// ReLU passes of the native backend (see relu.c).
#ifndef IMAGE_CLASSIFIER_RELU_H
#define IMAGE_CLASSIFIER_RELU_H

// y[i] = max(x[i], 0)
void ic_relu(const float *x, float *y, long n, int threads);
// dx[i] = dy[i] * (x[i] > 0 ? 1 : 0)
void ic_relu_grad(const float *dy, const float *x, float *dx, long n, int threads);

#endif
