// See include/inception_reduced.h for the contract. Each function is compiled for its instructions only (a target
// attribute), so the file builds for every x86-64 and the caller decides at run time which one may run.
#include "inception_reduced.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ROWS 6

// The tiles on zmm: `STEP(c, b, w)` adds to accumulator c (of type T, zero: ZERO) the products of the broadcast
// activations b and the weights w, `FLOATS(c)` is the sum as floats. Panels go three at a time — 18 accumulators,
// each broadcast shared by three — because these dot-product instructions have a longer latency than FMA (the
// measurements: docs/performance.md, "Why six accumulators were not enough"); the last one or two panels go as a
// smaller group.
#define ZMM_ROWS(STEP, c, w, i)                                                                                 \
    c[0] = STEP(c[0], _mm512_set1_epi32((int)a0[i]), w);                                                        \
    c[1] = STEP(c[1], _mm512_set1_epi32((int)a1[i]), w);                                                        \
    c[2] = STEP(c[2], _mm512_set1_epi32((int)a2[i]), w);                                                        \
    c[3] = STEP(c[3], _mm512_set1_epi32((int)a3[i]), w);                                                        \
    c[4] = STEP(c[4], _mm512_set1_epi32((int)a4[i]), w);                                                        \
    c[5] = STEP(c[5], _mm512_set1_epi32((int)a5[i]), w);
// Three panels' rows, each row's activations broadcast once for all three.
#define ZMM_ROW3(STEP, r, wk, vk, uk, i)                                                                        \
    {                                                                                                           \
        __m512i b = _mm512_set1_epi32((int)a##r[i]);                                                            \
        c[r] = STEP(c[r], b, wk);                                                                               \
        d[r] = STEP(d[r], b, vk);                                                                               \
        e[r] = STEP(e[r], b, uk);                                                                               \
    }
#define ZMM_ROWS3(STEP, wk, vk, uk, i)                                                                          \
    ZMM_ROW3(STEP, 0, wk, vk, uk, i) ZMM_ROW3(STEP, 1, wk, vk, uk, i) ZMM_ROW3(STEP, 2, wk, vk, uk, i)          \
    ZMM_ROW3(STEP, 3, wk, vk, uk, i) ZMM_ROW3(STEP, 4, wk, vk, uk, i) ZMM_ROW3(STEP, 5, wk, vk, uk, i)
#define ZMM_TILE(name, features, T, ZERO, STEP, FLOATS)                                                         \
    __attribute__((target(features))) void name(const uint32_t *const *a, long taps, long words,               \
                                                const uint32_t *weights, long panel_words, long panels,         \
                                                float *sums) {                                                  \
        for (long q = 0; q < panels; q += 3) {                                                                  \
            long group = panels - q < 3 ? panels - q : 3;                                                       \
            T c[ROWS], d[ROWS], e[ROWS];                                                                        \
            for (int r = 0; r < ROWS; r++) c[r] = d[r] = e[r] = ZERO;                                           \
            const uint32_t *w = weights + q * panel_words * 16, *v = w + panel_words * 16;                      \
            const uint32_t *u = v + panel_words * 16;                                                           \
            for (long t = 0; t < taps; t++) {                                                                   \
                const uint32_t *const *row = a + t * ROWS;                                                      \
                const uint32_t *a0 = row[0], *a1 = row[1], *a2 = row[2], *a3 = row[3], *a4 = row[4];            \
                const uint32_t *a5 = row[5];                                                                    \
                if (group == 3) {                                                                               \
                    for (long i = 0; i < words; i++, w += 16, v += 16, u += 16) {                               \
                        __m512i wk = _mm512_loadu_si512(w), vk = _mm512_loadu_si512(v);                         \
                        __m512i uk = _mm512_loadu_si512(u);                                                     \
                        ZMM_ROWS3(STEP, wk, vk, uk, i)                                                          \
                    }                                                                                           \
                } else if (group == 2) {                                                                        \
                    for (long i = 0; i < words; i++, w += 16, v += 16) {                                        \
                        __m512i wk = _mm512_loadu_si512(w), vk = _mm512_loadu_si512(v);                         \
                        ZMM_ROWS(STEP, c, wk, i)                                                                \
                        ZMM_ROWS(STEP, d, vk, i)                                                                \
                    }                                                                                           \
                } else {                                                                                        \
                    for (long i = 0; i < words; i++, w += 16) {                                                 \
                        __m512i wk = _mm512_loadu_si512(w);                                                     \
                        ZMM_ROWS(STEP, c, wk, i)                                                                \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(sums + (q * ROWS + r) * 16, FLOATS(c[r]));          \
            if (group > 1)                                                                                      \
                for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(sums + ((q + 1) * ROWS + r) * 16, FLOATS(d[r])); \
            if (group > 2)                                                                                      \
                for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(sums + ((q + 2) * ROWS + r) * 16, FLOATS(e[r])); \
        }                                                                                                       \
    }

// bf16 pairs: VDPBF16PS multiplies the two bf16 of each word and adds both products to the fp32 accumulator.
#define DPBF16_STEP(c, b, w) _mm512_dpbf16_ps(c, (__m512bh)(b), (__m512bh)(w))
#define AS_FLOATS(c) (c)
ZMM_TILE(inception_bf16_tile_avx512, "avx512f,avx512bw,avx512vl,avx512bf16", __m512, _mm512_setzero_ps(),
         DPBF16_STEP, AS_FLOATS)

// int8 quads: VPDPBUSD multiplies four u8 activations by four s8 weights and adds the four products in 32 bits.
#define DPBUSD512_STEP(c, b, w) _mm512_dpbusd_epi32(c, b, w)
ZMM_TILE(inception_int8_quads_tile_vnni, "avx512f,avx512bw,avx512vl,avx512vnni", __m512i, _mm512_setzero_si512(),
         DPBUSD512_STEP, _mm512_cvtepi32_ps)

// The int8 tiles on ymm: 16 output channels as two halves (lanes 0–7 and 8–15), 12 accumulators; `STEP(c, b, w)`
// adds to c the products of the broadcast activations b and the weights w.
#define YMM_ROW(STEP, r)                                                  \
    {                                                                     \
        __m256i b = _mm256_set1_epi32((int)a##r[i]);                      \
        l##r = STEP(l##r, b, wl);                                         \
        h##r = STEP(h##r, b, wh);                                         \
    }
#define YMM_INT8_TILE(name, features, STEP)                                                                     \
    __attribute__((target(features))) void name(const uint32_t *const *a, long taps, long words,               \
                                                const uint32_t *weights, long panel_words, long panels,         \
                                                float *sums) {                                                  \
        for (long q = 0; q < panels; q++) {                                                                     \
            __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0, l4 = l0, l5 = l0;                   \
            __m256i h0 = l0, h1 = l0, h2 = l0, h3 = l0, h4 = l0, h5 = l0;                                       \
            const uint32_t *w = weights + q * panel_words * 16;                                                 \
            for (long t = 0; t < taps; t++) {                                                                   \
                const uint32_t *const *row = a + t * ROWS;                                                      \
                const uint32_t *a0 = row[0], *a1 = row[1], *a2 = row[2], *a3 = row[3], *a4 = row[4];            \
                const uint32_t *a5 = row[5];                                                                    \
                for (long i = 0; i < words; i++, w += 16) {                                                     \
                    __m256i wl = _mm256_loadu_si256((const __m256i *)w);                                        \
                    __m256i wh = _mm256_loadu_si256((const __m256i *)(w + 8));                                  \
                    YMM_ROW(STEP, 0) YMM_ROW(STEP, 1) YMM_ROW(STEP, 2)                                          \
                    YMM_ROW(STEP, 3) YMM_ROW(STEP, 4) YMM_ROW(STEP, 5)                                          \
                }                                                                                               \
            }                                                                                                   \
            float *s = sums + q * ROWS * 16;                                                                    \
            __m256i lo[ROWS] = {l0, l1, l2, l3, l4, l5}, hi[ROWS] = {h0, h1, h2, h3, h4, h5};                   \
            for (int r = 0; r < ROWS; r++) {                                                                    \
                _mm256_storeu_ps(s + r * 16, _mm256_cvtepi32_ps(lo[r]));                                        \
                _mm256_storeu_ps(s + r * 16 + 8, _mm256_cvtepi32_ps(hi[r]));                                    \
            }                                                                                                   \
        }                                                                                                       \
    }

// AVX-VNNI (VEX-encoded VPDPBUSD on ymm: Alder Lake and later, Zen 4 and later): the quads of the AVX-512 kernel.
#define DPBUSD_STEP(c, b, w) _mm256_dpbusd_avx_epi32(c, b, w)
YMM_INT8_TILE(inception_int8_quads_tile_avxvnni, "avx2,fma,avxvnni", DPBUSD_STEP)

// AVX2 has no u8 × s8 instruction that cannot saturate (VPMADDUBSW adds two products into 16 bits: 255 · 127 · 2 >
// 32767), so activations arrive widened to 16 bits and weights are packed as s16: VPMADDWD sums two exact products
// into 32 bits. Exact, like VNNI: both give the same integers.
#define MADDWD_STEP(c, b, w) _mm256_add_epi32(c, _mm256_madd_epi16(b, w))
YMM_INT8_TILE(inception_int8_pairs_tile_avx2, "avx2,fma", MADDWD_STEP)

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
void inception_bf16_from_float_avx512(const float *source, uint16_t *destination, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(source + i));
        _mm256_storeu_si256((__m256i *)(destination + i), (__m256i)v);
    }
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, source + i));
        _mm256_mask_storeu_epi16(destination + i, m, (__m256i)v);
    }
}

static inline float quantize_one(float x, float inverse_scale, float zero_point) {
    float q = __builtin_nearbyintf(x * inverse_scale) + zero_point;
    return q < 0 ? 0 : (q > 255 ? 255 : q);
}

// Eight activations quantised, as eight u16 (each ≤ 255).
__attribute__((target("avx2,fma")))
static inline __m128i quantize8(const float *source, __m256 inverse, __m256 zero) {
    __m256 q = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(source), inverse),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, zero), _mm256_setzero_ps()), _mm256_set1_ps(255));
    __m256i v = _mm256_cvtps_epi32(q);
    return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

__attribute__((target("avx2,fma")))
void inception_quantize_u8_avx2(const float *source, uint8_t *destination, long count, float inverse_scale,
                                float zero_point) {
    __m256 inverse = _mm256_set1_ps(inverse_scale), zero = _mm256_set1_ps(zero_point);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        __m128i w = quantize8(source + i, inverse, zero);
        _mm_storel_epi64((__m128i *)(destination + i), _mm_packus_epi16(w, w));
    }
    for (; i < count; i++) destination[i] = (uint8_t)quantize_one(source[i], inverse_scale, zero_point);
}

__attribute__((target("avx2,fma")))
void inception_quantize_u16_avx2(const float *source, uint16_t *destination, long count, float inverse_scale,
                                 float zero_point) {
    __m256 inverse = _mm256_set1_ps(inverse_scale), zero = _mm256_set1_ps(zero_point);
    long i = 0;
    for (; i + 8 <= count; i += 8) _mm_storeu_si128((__m128i *)(destination + i), quantize8(source + i, inverse, zero));
    for (; i < count; i++) destination[i] = (uint16_t)quantize_one(source[i], inverse_scale, zero_point);
}

#else

// Not x86-64: the engine never calls these (the Swift references run instead).
void inception_bf16_tile_avx512(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                long panel_words, long panels, float *sums) { __builtin_trap(); }
void inception_int8_quads_tile_vnni(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                    long panel_words, long panels, float *sums) { __builtin_trap(); }
void inception_int8_pairs_tile_avx2(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                    long panel_words, long panels, float *sums) { __builtin_trap(); }
void inception_int8_quads_tile_avxvnni(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                       long panel_words, long panels, float *sums) { __builtin_trap(); }
void inception_bf16_from_float_avx512(const float *source, uint16_t *destination, long count) { __builtin_trap(); }
void inception_quantize_u8_avx2(const float *source, uint8_t *destination, long count, float inverse_scale,
                                float zero_point) { __builtin_trap(); }
void inception_quantize_u16_avx2(const float *source, uint16_t *destination, long count, float inverse_scale,
                                 float zero_point) { __builtin_trap(); }

#endif
