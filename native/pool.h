// Max pooling passes of the native backend (see pool.c); a describes the pooling as a convolution
// without filters: input n x h x w x c, window kh x kw, strides, padding, output oh x ow.
#ifndef IMAGE_CLASSIFIER_POOL_H
#define IMAGE_CLASSIFIER_POOL_H

#include <stdlib.h>

#include "conv.h"

void ic_max_pool(const struct conv_args *a, const float *x, float *y, int threads);
// dx for dy, given the pooling's input x and output y. Returns 0 when out of memory.
int ic_max_pool_grad(const struct conv_args *a, const float *x, const float *y, const float *dy, float *dx,
                     int threads);

#endif
