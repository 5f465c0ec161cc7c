/* Causal attention of one example in bf16 with AVX-512 BF16, forward and backward.
 *
 * Built and loaded by adaptune/train/native.py (gcc, no PyTorch headers; called through ctypes).
 * One kernel call covers every key-value head of one example. Head dimension 64.
 *
 * The inputs are read where they lie (fp32 or bf16, any row strides) and packed first into
 * the layouts the multiplies want ("word" = two bf16 in 32 bits; G query heads share a key head):
 *   qs   bf16 [kv][L*G][64]  query rows, row t*G+g = token t of query head g of the group,
 *                            multiplied by the softmax scale
 *   kt   word [kv][32][Lp]   keys as word columns: kt[h][p][n] = word p of key n (0 past L)
 *   vt   word [kv][32][Lp]   values, the same
 *   kp   word [kv][Lp/2][64] keys in pairs of rows: kp[h][j][c] = (k[2j][c], k[2j+1][c])
 *   vp   word [kv][Lp/2][64] values, the same
 * with Lp = L rounded up to a multiple of 32. Query blocks of bq tokens: block b attends keys
 * [0, end of block b), its own diagonal masked, so only the causal part is computed (plus the
 * diagonal squares). Scores, softmax and all accumulations are fp32; probabilities and their
 * gradients are rounded to bf16 for the multiplies, as PyTorch's bf16 attention does.
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "simd.h"

#define D 64
#define DW 32 /* words per row of 64 bf16 */
#define RM1 12 /* rows per score tile (two vectors of 16 columns each) */
#define MAX_THREADS 64

typedef uint16_t bf16;
typedef uint32_t word;

static inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* C[r][16*NV] (=|+=) sum_p A(r, p) * B[p][16*NV]: A(r, p) is the word at a[r*ars + p*aps],
 * B's rows ldb words apart, C's rows ldc floats apart. */
#define MICRO(RM, NV)                                                                          \
    static inline __attribute__((always_inline)) void micro_##RM##_##NV(                      \
        const word *a, int ars, int aps, const word *b, int ldb, int np, float *c, int ldc,    \
        int accumulate) {                                                                      \
        __m512 acc[RM][NV];                                                                    \
        _Pragma("GCC unroll 16") for (int i = 0; i < RM; i++)                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] =                   \
                accumulate ? _mm512_loadu_ps(c + i * ldc + 16 * j) : _mm512_setzero_ps();     \
        for (int p = 0; p < np; p++) {                                                         \
            __m512bh bv[NV];                                                                   \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) bv[j] =                       \
                (__m512bh)_mm512_loadu_si512((const void *)(b + (size_t)p * ldb + 16 * j));    \
            _Pragma("GCC unroll 16") for (int i = 0; i < RM; i++) {                            \
                __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)i * ars + (size_t)p * aps]); \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] =               \
                    _mm512_dpbf16_ps(acc[i][j], av, bv[j]);                                    \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int i = 0; i < RM; i++)                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                               \
                _mm512_storeu_ps(c + i * ldc + 16 * j, acc[i][j]);                             \
    }

MICRO(12, 2)
MICRO(6, 4)
MICRO(4, 4)
MICRO(2, 4)

/* C[rows][64] (=|+=) A · B with B [np][64 words]; rows a multiple of 2. */
static void gemm_n64(const word *a, int ars, int aps, const word *b, int np, float *c,
                     int rows, int accumulate) {
    int r = 0;
    for (; r + 6 <= rows; r += 6)
        micro_6_4(a + (size_t)r * ars, ars, aps, b, 64, np, c + (size_t)r * D, D, accumulate);
    if (rows - r == 4) micro_4_4(a + (size_t)r * ars, ars, aps, b, 64, np, c + (size_t)r * D, D, accumulate);
    if (rows - r == 2) micro_2_4(a + (size_t)r * ars, ars, aps, b, 64, np, c + (size_t)r * D, D, accumulate);
}

/* S[rows][cols] = Arows(64 bf16 each) · Bt, Bt word columns [32][ldb]; rows % 12 == 0,
 * cols % 32 == 0. */
static void gemm_scores(const word *a, const word *bt, int ldb, float *s, int rows, int cols) {
    for (int r = 0; r < rows; r += RM1)
        for (int n = 0; n < cols; n += 32)
            micro_12_2(a + (size_t)r * DW, DW, 1, bt + n, ldb, DW, s + (size_t)r * cols + n, cols, 0);
}

static inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

/* An input tensor seen as [heads][L][64]: fp32 or bf16, rows `sh` (head) and `st` (token)
 * elements apart, each row contiguous. */
typedef struct {
    const void *p;
    int bf16;
    long sh, st;
} view;

/* Row (head, token) of `x` as 64 fp32 in four vectors. */
static inline void load_row(const view *x, int head, int token, __m512 out[4]) {
    size_t at = (size_t)head * x->sh + (size_t)token * x->st;
    for (int c = 0; c < 4; c++) {
        if (x->bf16) {
            __m256i h = _mm256_loadu_si256((const __m256i *)((const bf16 *)x->p + at + 16 * c));
            out[c] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        } else {
            out[c] = _mm512_loadu_ps((const float *)x->p + at + 16 * c);
        }
    }
}

/* Rotary position embedding of one example: cos and sin [L][64] fp32, rows `st` apart; a NULL
 * cos means none. Row t of q and k is rotated by cos[t], sin[t] as transformers' Llama does:
 * y = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[32:], x[:32]). */
typedef struct {
    const float *cos, *sin;
    long st;
} rope;

static inline void rotate(const rope *r, int t, __m512 v[4], int transpose) {
    const float *c = r->cos + (size_t)t * r->st, *s = r->sin + (size_t)t * r->st;
    __m512 c0 = _mm512_loadu_ps(c), c1 = _mm512_loadu_ps(c + 16), c2 = _mm512_loadu_ps(c + 32),
           c3 = _mm512_loadu_ps(c + 48), s0 = _mm512_loadu_ps(s), s1 = _mm512_loadu_ps(s + 16),
           s2 = _mm512_loadu_ps(s + 32), s3 = _mm512_loadu_ps(s + 48);
    __m512 x0 = v[0], x1 = v[1], x2 = v[2], x3 = v[3];
    if (!transpose) { /* y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2 (halves) */
        v[0] = _mm512_fnmadd_ps(x2, s0, _mm512_mul_ps(x0, c0));
        v[1] = _mm512_fnmadd_ps(x3, s1, _mm512_mul_ps(x1, c1));
        v[2] = _mm512_fmadd_ps(x0, s2, _mm512_mul_ps(x2, c2));
        v[3] = _mm512_fmadd_ps(x1, s3, _mm512_mul_ps(x3, c3));
    } else { /* the gradient: dx1 = g1 c1 + g2 s2, dx2 = g2 c2 - g1 s1 */
        v[0] = _mm512_fmadd_ps(x2, s2, _mm512_mul_ps(x0, c0));
        v[1] = _mm512_fmadd_ps(x3, s3, _mm512_mul_ps(x1, c1));
        v[2] = _mm512_fnmadd_ps(x0, s0, _mm512_mul_ps(x2, c2));
        v[3] = _mm512_fnmadd_ps(x1, s1, _mm512_mul_ps(x3, c3));
    }
}

typedef struct {
    int kv, L, G, bq, threads;
    float scale;
    const bf16 *q;      /* [kv][L*G][64], scaled */
    const word *kt, *vt, *kp, *vp;
    bf16 *out;          /* [L][kv*G][64] (forward) */
    float *lse;         /* [kv][L*G] */
    const bf16 *dout;   /* [kv][L*G][64] (backward) */
    float *dq;          /* [kv*G][L][64] (backward) */
    float *dk_own, *dv_own; /* [kv][Lp][64]: this thread's sums (backward) */
    rope rope;
    int thread;
} job;

/* Block b of group h: tokens [t0, t1), its rows [first, first + real) of the group's L*G, padded
 * to `rows`; keys [0, cols) with cols = t1 rounded up to 32. */
typedef struct {
    int t0, t1, first, real, rows, cols, Lp;
} block;

static block geometry(const job *j, int b) {
    block k;
    k.t0 = b * j->bq;
    k.t1 = k.t0 + j->bq < j->L ? k.t0 + j->bq : j->L;
    k.first = k.t0 * j->G;
    k.real = (k.t1 - k.t0) * j->G;
    k.rows = round_up(k.real, RM1);
    k.cols = round_up(k.t1, 32);
    k.Lp = round_up(j->L, 32);
    return k;
}

/* Probabilities of one block's rows: p[r][n] = exp(s[r][n] - lse[r]) for n <= token of r, else 0
 * (and 0 for rows past the example). With `compute`, the row's log-sum-exp is worked out and
 * stored first; without, the stored one is used (the backward pass). */
static void softmax_rows(float *s, int rows, int real_rows, int cols, int first_row, int G,
                         float *lse, int compute) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (size_t)r * cols;
        int valid = r < real_rows ? (first_row + r) / G + 1 : 0;
        if (valid == 0) {
            memset(row, 0, sizeof(float) * cols);
            continue;
        }
        float m, l;
        if (compute) {
            __m512 mv = _mm512_set1_ps(-INFINITY);
            int n = 0;
            for (; n + 16 <= valid; n += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(row + n));
            if (n < valid) {
                __mmask16 k = (__mmask16)((1u << (valid - n)) - 1);
                mv = _mm512_mask_max_ps(mv, k, mv, _mm512_maskz_loadu_ps(k, row + n));
            }
            m = _mm512_reduce_max_ps(mv);
            __m512 sv = _mm512_setzero_ps(), mb = _mm512_set1_ps(m);
            for (n = 0; n + 16 <= valid; n += 16)
                sv = _mm512_add_ps(sv, exp512(_mm512_sub_ps(_mm512_loadu_ps(row + n), mb)));
            if (n < valid) {
                __mmask16 k = (__mmask16)((1u << (valid - n)) - 1);
                sv = _mm512_mask_add_ps(sv, k, sv, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + n), mb)));
            }
            l = m + logf(_mm512_reduce_add_ps(sv));
            lse[first_row + r] = l;
        } else {
            l = lse[first_row + r];
        }
        __m512 lb = _mm512_set1_ps(l);
        for (int n = 0; n < cols; n += 16) {
            __mmask16 k = n >= valid ? 0 : (valid - n >= 16 ? 0xFFFF : (__mmask16)((1u << (valid - n)) - 1));
            __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + n), lb));
            _mm512_storeu_ps(row + n, _mm512_maskz_mov_ps(k, e));
        }
    }
}

/* fp32 rows -> bf16 rows (cols % 16 == 0). */
static void rows_to_bf16(const float *s, bf16 *p, int rows, int cols) {
    for (size_t i = 0; i < (size_t)rows * cols; i += 16)
        _mm256_storeu_si256((__m256i *)(p + i), to_bf16(_mm512_loadu_ps(s + i)));
}

/* fp32 rows -> words pairing rows: w[i][n] = (x[2i][n], x[2i+1][n]) (rows even, cols % 16 == 0). */
static void row_pairs(const float *x, word *w, int rows, int cols) {
    for (int i = 0; i < rows / 2; i++)
        for (int n = 0; n < cols; n += 16) {
            __m512i lo = _mm512_cvtepu16_epi32(to_bf16(_mm512_loadu_ps(x + (size_t)(2 * i) * cols + n)));
            __m512i hi = _mm512_cvtepu16_epi32(to_bf16(_mm512_loadu_ps(x + (size_t)(2 * i + 1) * cols + n)));
            _mm512_storeu_si512(w + (size_t)i * cols + n, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
}

/* bf16 rows of 64 -> words pairing rows: w[i][c] = (x[2i][c], x[2i+1][c]) (rows even). */
static void bf16_row_pairs(const bf16 *x, word *w, int rows) {
    for (int i = 0; i < rows / 2; i++)
        for (int c = 0; c < D; c += 16) {
            __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + (size_t)(2 * i) * D + c)));
            __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + (size_t)(2 * i + 1) * D + c)));
            _mm512_storeu_si512(w + (size_t)i * D + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
}

typedef struct {
    float *s, *dp, *o;
    bf16 *p, *qrows;
    word *pp, *dsp, *qp, *dop;
    bf16 *dorows;
} scratch;

static int scratch_init(scratch *w, int bq, int G, int Lp) {
    int rows = round_up(bq * G, RM1);
    size_t sc = (size_t)rows * Lp;
    w->s = aligned_alloc(64, sizeof(float) * sc);
    w->dp = aligned_alloc(64, sizeof(float) * sc);
    w->o = aligned_alloc(64, sizeof(float) * rows * D);
    w->p = aligned_alloc(64, sizeof(bf16) * sc + 64);
    w->qrows = aligned_alloc(64, sizeof(bf16) * rows * D);
    w->dorows = aligned_alloc(64, sizeof(bf16) * rows * D);
    w->pp = aligned_alloc(64, sizeof(word) * (sc / 2 + 16));
    w->dsp = aligned_alloc(64, sizeof(word) * (sc / 2 + 16));
    w->qp = aligned_alloc(64, sizeof(word) * (rows / 2) * D);
    w->dop = aligned_alloc(64, sizeof(word) * (rows / 2) * D);
    return w->s && w->dp && w->o && w->p && w->qrows && w->dorows && w->pp && w->dsp && w->qp && w->dop;
}

static void scratch_free(scratch *w) {
    free(w->s); free(w->dp); free(w->o); free(w->p); free(w->qrows); free(w->dorows);
    free(w->pp); free(w->dsp); free(w->qp); free(w->dop);
}

/* Copy a block's rows (zero rows past the example) so that tiles of 12 rows are whole. */
static void block_rows(const bf16 *src, bf16 *dst, int real, int rows) {
    memcpy(dst, src, sizeof(bf16) * (size_t)real * D);
    memset(dst + (size_t)real * D, 0, sizeof(bf16) * (size_t)(rows - real) * D);
}

static void forward_block(const job *j, scratch *w, int h, int b) {
    block k = geometry(j, b);
    int G = j->G, heads = j->kv * G;
    block_rows(j->q + ((size_t)h * j->L * G + k.first) * D, w->qrows, k.real, k.rows);
    gemm_scores((const word *)w->qrows, j->kt + (size_t)h * DW * k.Lp, k.Lp, w->s, k.rows, k.cols);
    softmax_rows(w->s, k.rows, k.real, k.cols, k.first, G, j->lse + (size_t)h * j->L * G, 1);
    rows_to_bf16(w->s, w->p, k.rows, k.cols);
    gemm_n64((const word *)w->p, k.cols / 2, 1, j->vp + (size_t)h * (k.Lp / 2) * D, k.cols / 2, w->o,
             k.rows, 0);
    for (int r = 0; r < k.real; r++) {
        int t = (k.first + r) / G, g = (k.first + r) % G;
        bf16 *out = j->out + ((size_t)t * heads + h * G + g) * D;
        for (int c = 0; c < D; c += 16)
            _mm256_storeu_si256((__m256i *)(out + c), to_bf16(_mm512_loadu_ps(w->o + (size_t)r * D + c)));
    }
}

static void backward_block(const job *j, scratch *w, int h, int b) {
    block k = geometry(j, b);
    int G = j->G, L = j->L, rows = k.rows, cols = k.cols;
    block_rows(j->q + ((size_t)h * L * G + k.first) * D, w->qrows, k.real, rows);
    block_rows(j->dout + ((size_t)h * L * G + k.first) * D, w->dorows, k.real, rows);
    /* P, recomputed from the saved log-sum-exp */
    gemm_scores((const word *)w->qrows, j->kt + (size_t)h * DW * k.Lp, k.Lp, w->s, rows, cols);
    softmax_rows(w->s, rows, k.real, cols, k.first, G, j->lse + (size_t)h * L * G, 0);
    /* dP = dO · V^T */
    gemm_scores((const word *)w->dorows, j->vt + (size_t)h * DW * k.Lp, k.Lp, w->dp, rows, cols);
    /* dS = P ∘ (dP − rowsum(P ∘ dP)), in place of dP */
    for (int r = 0; r < rows; r++) {
        float *pr = w->s + (size_t)r * cols, *dr = w->dp + (size_t)r * cols;
        __m512 acc = _mm512_setzero_ps();
        for (int n = 0; n < cols; n += 16)
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pr + n), _mm512_loadu_ps(dr + n), acc);
        __m512 dsum = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
        for (int n = 0; n < cols; n += 16)
            _mm512_storeu_ps(dr + n, _mm512_mul_ps(_mm512_loadu_ps(pr + n), _mm512_sub_ps(_mm512_loadu_ps(dr + n), dsum)));
    }
    /* dQ = dS · K, times the scale the queries were multiplied by */
    rows_to_bf16(w->dp, w->p, rows, cols);
    gemm_n64((const word *)w->p, cols / 2, 1, j->kp + (size_t)h * (k.Lp / 2) * D, cols / 2, w->o, rows, 0);
    __m512 sc = _mm512_set1_ps(j->scale);
    for (int r = 0; r < k.real; r++) {
        int t = (k.first + r) / G, g = (k.first + r) % G;
        float *dq = j->dq + ((size_t)(h * G + g) * L + t) * D;
        __m512 x[4];
        for (int c = 0; c < 4; c++) x[c] = _mm512_mul_ps(_mm512_loadu_ps(w->o + (size_t)r * D + 16 * c), sc);
        if (j->rope.cos) rotate(&j->rope, t, x, 1);
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(dq + 16 * c, x[c]);
    }
    /* dK += dS^T · Q and dV += P^T · dO: keys as rows, the block's query rows in pairs */
    row_pairs(w->dp, w->dsp, rows, cols);
    row_pairs(w->s, w->pp, rows, cols);
    bf16_row_pairs(w->qrows, w->qp, rows);
    bf16_row_pairs(w->dorows, w->dop, rows);
    gemm_n64(w->dsp, 1, cols, w->qp, rows / 2, j->dk_own + (size_t)h * k.Lp * D, cols, 1);
    gemm_n64(w->pp, 1, cols, w->dop, rows / 2, j->dv_own + (size_t)h * k.Lp * D, cols, 1);
}

/* One thread's share of the blocks, interleaved (the causal triangle makes later blocks
 * longer); returns 1 when its scratch memory could not be had. */
static int run_blocks(job *j, void (*fn)(const job *, scratch *, int, int)) {
    scratch w;
    int blocks = (j->L + j->bq - 1) / j->bq, failed = 0;
    if (scratch_init(&w, j->bq, j->G, round_up(j->L, 32)))
        for (int task = j->thread; task < j->kv * blocks; task += j->threads)
            fn(j, &w, task % j->kv, task / j->kv);
    else
        failed = 1;
    scratch_free(&w);
    return failed;
}

/* Rows of a [heads][L][64] view -> [kv][L*G][64] bf16 rows (times `scale`), row t*G+g of group
 * h = token t of head h*G+g; shared out over the team's threads. */
static void pack_rows(const view *x, int kv, int L, int G, float scale, const rope *r, bf16 *dst) {
    __m512 sc = _mm512_set1_ps(scale), row[4];
#pragma omp for schedule(static)
    for (int i = 0; i < kv * L; i++) {
        int h = i / L, t = i % L;
        for (int g = 0; g < G; g++) {
            load_row(x, h * G + g, t, row);
            if (r->cos) rotate(r, t, row, 0);
            bf16 *out = dst + ((size_t)h * L * G + (size_t)t * G + g) * D;
            for (int c = 0; c < 4; c++)
                _mm256_storeu_si256((__m256i *)(out + 16 * c), to_bf16(_mm512_mul_ps(row[c], sc)));
        }
    }
}

/* Keys or values of a [kv][L][64] view -> word columns [kv][32][Lp] and row pairs
 * [kv][Lp/2][64] (both zero past L); shared out over the team's threads. */
static void pack_keys(const view *x, int kv, int L, const rope *r, word *cols, word *pairs) {
    int Lp = round_up(L, 32);
#pragma omp for schedule(static)
    for (int i = 0; i < kv * Lp; i++) {
        int h = i / Lp, n = i % Lp;
        bf16 row[D];
        if (n < L) {
            __m512 v[4];
            load_row(x, h, n, v);
            if (r->cos) rotate(r, n, v, 0);
            for (int c = 0; c < 4; c++) _mm256_storeu_si256((__m256i *)(row + 16 * c), to_bf16(v[c]));
        } else {
            memset(row, 0, sizeof(row));
        }
        const word *w = (const word *)row;
        for (int p = 0; p < DW; p++) cols[((size_t)h * DW + p) * Lp + n] = w[p];
        bf16 *half = (bf16 *)(pairs + ((size_t)h * (Lp / 2) + n / 2) * D) + (n & 1);
        for (int c = 0; c < D; c++) half[2 * c] = row[c];
    }
}

static int team_size(const job *j, int threads) {
    int blocks = (j->L + j->bq - 1) / j->bq;
    if (threads > j->kv * blocks) threads = j->kv * blocks;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    return threads < 1 ? 1 : threads;
}

/* Forward of one example. q [heads][L][64], k and v [kv][L][64] (fp32 or bf16 views), q and k
 * rotated first where cos is not NULL; out
 * [L][heads][64] bf16 and lse [kv][L*G] filled, and what the backward pass needs: qs
 * [kv][L*G][64] (the queries times `scale`), kt and vt [kv][32][Lp], kp and vp [kv][Lp/2][64].
 * Threads: PyTorch's OpenMP team (the process has one libgomp, torch's), so that no second
 * pool fights torch's spinning workers for the cores. Returns 0, or 1 without memory. */
int adaptune_attention_forward(int kv, int L, int G, int bq, int threads, float scale,
                               const void *q, int q_bf16, long q_sh, long q_st,
                               const void *k, int k_bf16, long k_sh, long k_st,
                               const void *v, int v_bf16, long v_sh, long v_st,
                               const float *cos, const float *sin, long rope_st,
                               bf16 *out, float *lse, bf16 *qs, word *kt, word *kp, word *vt,
                               word *vp) {
    view qv = {q, q_bf16, q_sh, q_st}, kv_ = {k, k_bf16, k_sh, k_st}, vv = {v, v_bf16, v_sh, v_st};
    rope r = {cos, sin, rope_st}, none = {NULL, NULL, 0};
    job base = {0};
    base.kv = kv; base.L = L; base.G = G; base.bq = bq; base.scale = scale;
    base.q = qs; base.kt = kt; base.vp = vp; base.out = out; base.lse = lse;
    int failed = 0;
    threads = team_size(&base, threads);
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        job j = base;
        j.thread = omp_get_thread_num();
        j.threads = omp_get_num_threads();
        pack_rows(&qv, kv, L, G, scale, &r, qs);
        pack_keys(&kv_, kv, L, &r, kt, kp);
        pack_keys(&vv, kv, L, &none, vt, vp);
        failed = run_blocks(&j, forward_block);
    }
    return failed;
}

/* Backward of one example: grad [heads][L][64] (a view of the output's gradient) and what the
 * forward pass kept (and the same cos and sin, whose rotation the gradients of q and k go back
 * through); dq [heads][L][64], dk and dv [kv][L][64] filled (fp32); dout is scratch of
 * [kv][L*G][64] bf16. Returns 0, or 1 without memory. */
int adaptune_attention_backward(int kv, int L, int G, int bq, int threads, float scale,
                                const void *grad, int g_bf16, long g_sh, long g_st,
                                const float *cos, const float *sin, long rope_st,
                                const bf16 *qs, const word *kt, const word *kp, const word *vt,
                                const float *lse, bf16 *dout, float *dq, float *dk, float *dv) {
    view gv = {grad, g_bf16, g_sh, g_st};
    rope none = {NULL, NULL, 0};
    job base = {0};
    base.kv = kv; base.L = L; base.G = G; base.bq = bq; base.scale = scale;
    base.q = qs; base.kt = kt; base.kp = kp; base.vt = vt; base.lse = (float *)lse;
    base.dout = dout; base.dq = dq;
    base.rope.cos = cos; base.rope.sin = sin; base.rope.st = rope_st;
    int Lp = round_up(L, 32), failed = 0;
    size_t size = (size_t)kv * Lp * D;
    threads = team_size(&base, threads);
    float *sums[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++)
        if (!(sums[t] = calloc(2 * size, sizeof(float)))) failed = 1;
    if (!failed) {
#pragma omp parallel num_threads(threads) reduction(| : failed)
        {
            job j = base;
            j.thread = omp_get_thread_num();
            j.threads = omp_get_num_threads();
            j.dk_own = sums[j.thread];
            j.dv_own = sums[j.thread] + size;
            pack_rows(&gv, kv, L, G, 1.0f, &none, dout);
            failed = run_blocks(&j, backward_block);
#pragma omp barrier
#pragma omp for schedule(static)
            for (int i = 0; i < kv * L; i++) {
                int h = i / L, n = i % L;
                size_t at = ((size_t)h * Lp + n) * D;
                __m512 a[4], b[4];
                for (int c = 0; c < 4; c++) {
                    a[c] = b[c] = _mm512_setzero_ps();
                    for (int t = 0; t < j.threads; t++) {
                        a[c] = _mm512_add_ps(a[c], _mm512_loadu_ps(sums[t] + at + 16 * c));
                        b[c] = _mm512_add_ps(b[c], _mm512_loadu_ps(sums[t] + size + at + 16 * c));
                    }
                }
                if (cos) rotate(&base.rope, n, a, 1);
                for (int c = 0; c < 4; c++) {
                    _mm512_storeu_ps(dk + (size_t)i * D + 16 * c, a[c]);
                    _mm512_storeu_ps(dv + (size_t)i * D + 16 * c, b[c]);
                }
            }
        }
    }
    for (int t = 0; t < threads; t++) free(sums[t]);
    return failed;
}
