/* Element-wise parts of a Llama-style block in training, one pass each, AVX-512.
 *
 * Built and loaded by adaptune/train/native.py like attention.c. Rows are contiguous; threads
 * are PyTorch's own OpenMP team (the process has one libgomp, torch's).
 *
 *   RMSNorm (frozen weight), fp32:   y = w * x * rstd, rstd = 1 / sqrt(mean(x^2) + eps)
 *                          backward: dx = rstd * (g*w - n * mean(g*w*n)), n = x * rstd
 *   gated SiLU (Llama's MLP middle), fp32 or bf16 in and out, fp32 inside:
 *                                    h = silu(a) * b
 *                          backward: db = g * silu(a), da = g * b * s * (1 + a * (1 - s)),
 *                                    s = sigmoid(a)
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "simd.h"

typedef uint16_t bf16;

static inline __mmask16 tail(long n, long i) {
    long left = n - i;
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

static inline __m512 load(const void *p, int is_bf16, long i, __mmask16 k) {
    if (is_bf16) {
        __m256i h = _mm256_maskz_loadu_epi16(k, (const bf16 *)p + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(k, (const float *)p + i);
}

static inline void store(void *p, int is_bf16, long i, __mmask16 k, __m512 x) {
    if (is_bf16)
        _mm256_mask_storeu_epi16((bf16 *)p + i, k, (__m256i)_mm512_cvtneps_pbh(x));
    else
        _mm512_mask_storeu_ps((float *)p + i, k, x);
}

void adaptune_rms_norm_forward(long rows, long width, const float *x, const float *w, float eps,
                               float *y, float *rstd, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * width;
        float *yr = y + r * width;
        __m512 acc = _mm512_setzero_ps();
        for (long i = 0; i < width; i += 16) {
            __m512 v = _mm512_maskz_loadu_ps(tail(width, i), xr + i);
            acc = _mm512_fmadd_ps(v, v, acc);
        }
        float s = 1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)width + eps);
        rstd[r] = s;
        __m512 sv = _mm512_set1_ps(s);
        for (long i = 0; i < width; i += 16) {
            __mmask16 k = tail(width, i);
            __m512 n = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + i), sv);
            _mm512_mask_storeu_ps(yr + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i), n));
        }
    }
}

void adaptune_rms_norm_backward(long rows, long width, const float *x, const float *w,
                                const float *rstd, const float *g, float *dx, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * width, *gr = g + r * width;
        float *dr = dx + r * width;
        __m512 sv = _mm512_set1_ps(rstd[r]), acc = _mm512_setzero_ps();
        for (long i = 0; i < width; i += 16) {
            __mmask16 k = tail(width, i);
            __m512 gw = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, gr + i), _mm512_maskz_loadu_ps(k, w + i));
            acc = _mm512_fmadd_ps(gw, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + i), sv), acc);
        }
        __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc) / (float)width);
        for (long i = 0; i < width; i += 16) {
            __mmask16 k = tail(width, i);
            __m512 gw = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, gr + i), _mm512_maskz_loadu_ps(k, w + i));
            __m512 n = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xr + i), sv);
            _mm512_mask_storeu_ps(dr + i, k, _mm512_mul_ps(_mm512_fnmadd_ps(n, dot, gw), sv));
        }
    }
}

static inline __m512 sigmoid(__m512 a) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), a))));
}

/* h = silu(a) * b over n elements. */
void adaptune_gated_silu_forward(long n, int is_bf16, const void *a, const void *b, void *h,
                                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = tail(n, i);
        __m512 av = load(a, is_bf16, i, k), bv = load(b, is_bf16, i, k);
        store(h, is_bf16, i, k, _mm512_mul_ps(_mm512_mul_ps(av, sigmoid(av)), bv));
    }
}

/* da and db (new buffers) from g = dL/dh over n elements. */
void adaptune_gated_silu_backward(long n, int is_bf16, const void *a, const void *b,
                                  const void *g, void *da, void *db, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = tail(n, i);
        __m512 av = load(a, is_bf16, i, k), bv = load(b, is_bf16, i, k), gv = load(g, is_bf16, i, k);
        __m512 s = sigmoid(av), one = _mm512_set1_ps(1.0f);
        __m512 silu = _mm512_mul_ps(av, s);
        store(db, is_bf16, i, k, _mm512_mul_ps(gv, silu));
        /* s * (1 + a * (1 - s)) */
        __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(av, _mm512_sub_ps(one, s), one));
        store(da, is_bf16, i, k, _mm512_mul_ps(_mm512_mul_ps(gv, bv), d));
    }
}
