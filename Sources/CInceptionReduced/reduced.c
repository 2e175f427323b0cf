// See include/inception_reduced.h for the contract. Each function is compiled for its instructions only (a target
// attribute), so the file builds for every x86-64 and the caller decides at run time which one may run.
#include "inception_reduced.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ROWS 6
#define INLINE static inline __attribute__((always_inline))
#define AVX512 "avx512f,avx512bw,avx512vl"

// A micro-kernel's inner step: accumulator c plus the products of the broadcast activations b and the weights w.
// The kernels below are written once over their step, which the compiler inlines into each instantiation (always
// inline, the step a constant there), so each compiles to the code a hand-written copy would.
typedef __m512i (*zmm_step)(__m512i c, __m512i b, __m512i w);
typedef __m256i (*ymm_step)(__m256i c, __m256i b, __m256i w);
// A zmm accumulator's sums as floats.
typedef __m512 (*zmm_floats)(__m512i c);

// Row r of the tile: its activations' word i, broadcast, times the panel's weights w, added to c[r].
__attribute__((target(AVX512))) INLINE void zmm_rows(zmm_step step, __m512i *c, const uint32_t *const *a, long i,
                                                     __m512i w) {
    for (int r = 0; r < ROWS; r++) c[r] = step(c[r], _mm512_set1_epi32((int)a[r][i]), w);
}

// Three panels' rows, each row's activations broadcast once for all three.
__attribute__((target(AVX512))) INLINE void zmm_rows3(zmm_step step, __m512i *c, __m512i *d, __m512i *e,
                                                      const uint32_t *const *a, long i, __m512i w, __m512i v,
                                                      __m512i u) {
    for (int r = 0; r < ROWS; r++) {
        __m512i b = _mm512_set1_epi32((int)a[r][i]);
        c[r] = step(c[r], b, w);
        d[r] = step(d[r], b, v);
        e[r] = step(e[r], b, u);
    }
}

// One tap of a group of one to three panels (w, v, u their weights at this tap), over the tap's words.
__attribute__((target(AVX512))) INLINE void zmm_tap(zmm_step step, long group, __m512i *c, __m512i *d, __m512i *e,
                                                    const uint32_t *const *a, long words, const uint32_t **w,
                                                    const uint32_t **v, const uint32_t **u) {
    if (group == 3) {
        for (long i = 0; i < words; i++, *w += 16, *v += 16, *u += 16)
            zmm_rows3(step, c, d, e, a, i, _mm512_loadu_si512(*w), _mm512_loadu_si512(*v), _mm512_loadu_si512(*u));
    } else if (group == 2) {
        for (long i = 0; i < words; i++, *w += 16, *v += 16) {
            __m512i wk = _mm512_loadu_si512(*w), vk = _mm512_loadu_si512(*v);
            zmm_rows(step, c, a, i, wk);
            zmm_rows(step, d, a, i, vk);
        }
    } else {
        for (long i = 0; i < words; i++, *w += 16) zmm_rows(step, c, a, i, _mm512_loadu_si512(*w));
    }
}

// The tiles on zmm. Panels go three at a time — 18 accumulators, each broadcast shared by three — because these
// dot-product instructions have a longer latency than FMA (the measurements: docs/performance.md, "Why six
// accumulators were not enough"); the last one or two panels go as a smaller group.
__attribute__((target(AVX512))) INLINE void zmm_tile(zmm_step step, zmm_floats floats, const uint32_t *const *a,
                                                     long taps, long words, const uint32_t *weights,
                                                     long panel_words, long panels, float *sums) {
    for (long q = 0; q < panels; q += 3) {
        long group = panels - q < 3 ? panels - q : 3;
        __m512i c[ROWS], d[ROWS], e[ROWS];
        for (int r = 0; r < ROWS; r++) c[r] = d[r] = e[r] = _mm512_setzero_si512();
        const uint32_t *w = weights + q * panel_words * 16, *v = w + panel_words * 16, *u = v + panel_words * 16;
        for (long t = 0; t < taps; t++) {
            const uint32_t *const *row = a + t * ROWS;
            const uint32_t *rows[ROWS] = {row[0], row[1], row[2], row[3], row[4], row[5]};
            zmm_tap(step, group, c, d, e, rows, words, &w, &v, &u);
        }
        for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(sums + (q * ROWS + r) * 16, floats(c[r]));
        if (group > 1)
            for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(sums + ((q + 1) * ROWS + r) * 16, floats(d[r]));
        if (group > 2)
            for (int r = 0; r < ROWS; r++) _mm512_storeu_ps(sums + ((q + 2) * ROWS + r) * 16, floats(e[r]));
    }
}

// bf16 pairs: VDPBF16PS multiplies the two bf16 of each word and adds both products to the fp32 accumulator.
#define BF16 AVX512 ",avx512bf16"
__attribute__((target(BF16))) INLINE __m512i dpbf16_step(__m512i c, __m512i b, __m512i w) {
    return _mm512_castps_si512(_mm512_dpbf16_ps(_mm512_castsi512_ps(c), (__m512bh)b, (__m512bh)w));
}
__attribute__((target(AVX512))) INLINE __m512 as_floats(__m512i c) { return _mm512_castsi512_ps(c); }
__attribute__((target(BF16))) void inception_bf16_tile_avx512(const uint32_t *const *a, long taps, long words,
                                                            const uint32_t *weights, long panel_words, long panels,
                                                            float *sums) {
    zmm_tile(dpbf16_step, as_floats, a, taps, words, weights, panel_words, panels, sums);
}

// int8 quads: VPDPBUSD multiplies four u8 activations by four s8 weights and adds the four products in 32 bits.
#define VNNI AVX512 ",avx512vnni"
__attribute__((target(VNNI))) INLINE __m512i dpbusd512_step(__m512i c, __m512i b, __m512i w) {
    return _mm512_dpbusd_epi32(c, b, w);
}
__attribute__((target(AVX512))) INLINE __m512 converted(__m512i c) { return _mm512_cvtepi32_ps(c); }
__attribute__((target(VNNI))) void inception_int8_quads_tile_vnni(const uint32_t *const *a, long taps, long words,
                                                                const uint32_t *weights, long panel_words,
                                                                long panels, float *sums) {
    zmm_tile(dpbusd512_step, converted, a, taps, words, weights, panel_words, panels, sums);
}

// The int8 tiles on ymm: 16 output channels as two halves (lanes 0–7 and 8–15), 12 accumulators.
__attribute__((target("avx2"))) INLINE void ymm_tile(ymm_step step, const uint32_t *const *a, long taps, long words,
                                                    const uint32_t *weights, long panel_words, long panels,
                                                    float *sums) {
    for (long q = 0; q < panels; q++) {
        __m256i lo[ROWS], hi[ROWS];
        for (int r = 0; r < ROWS; r++) lo[r] = hi[r] = _mm256_setzero_si256();
        const uint32_t *w = weights + q * panel_words * 16;
        for (long t = 0; t < taps; t++) {
            const uint32_t *const *row = a + t * ROWS;
            const uint32_t *rows[ROWS] = {row[0], row[1], row[2], row[3], row[4], row[5]};
            for (long i = 0; i < words; i++, w += 16) {
                __m256i wl = _mm256_loadu_si256((const __m256i *)w), wh = _mm256_loadu_si256((const __m256i *)(w + 8));
                for (int r = 0; r < ROWS; r++) {
                    __m256i b = _mm256_set1_epi32((int)rows[r][i]);
                    lo[r] = step(lo[r], b, wl);
                    hi[r] = step(hi[r], b, wh);
                }
            }
        }
        float *s = sums + q * ROWS * 16;
        for (int r = 0; r < ROWS; r++) {
            _mm256_storeu_ps(s + r * 16, _mm256_cvtepi32_ps(lo[r]));
            _mm256_storeu_ps(s + r * 16 + 8, _mm256_cvtepi32_ps(hi[r]));
        }
    }
}

// AVX-VNNI (VEX-encoded VPDPBUSD on ymm: Alder Lake and later, Zen 4 and later): the quads of the AVX-512 kernel.
__attribute__((target("avx2,fma,avxvnni"))) INLINE __m256i dpbusd_step(__m256i c, __m256i b, __m256i w) {
    return _mm256_dpbusd_avx_epi32(c, b, w);
}
__attribute__((target("avx2,fma,avxvnni"))) void inception_int8_quads_tile_avxvnni(
    const uint32_t *const *a, long taps, long words, const uint32_t *weights, long panel_words, long panels,
    float *sums) {
    ymm_tile(dpbusd_step, a, taps, words, weights, panel_words, panels, sums);
}

// AVX2 has no u8 × s8 instruction that cannot saturate (VPMADDUBSW adds two products into 16 bits: 255 · 127 · 2 >
// 32767), so activations arrive widened to 16 bits and weights are packed as s16: VPMADDWD sums two exact products
// into 32 bits. Exact, like VNNI: both give the same integers.
__attribute__((target("avx2,fma"))) INLINE __m256i maddwd_step(__m256i c, __m256i b, __m256i w) {
    return _mm256_add_epi32(c, _mm256_madd_epi16(b, w));
}
__attribute__((target("avx2,fma"))) void inception_int8_pairs_tile_avx2(const uint32_t *const *a, long taps,
                                                                      long words, const uint32_t *weights,
                                                                      long panel_words, long panels, float *sums) {
    ymm_tile(maddwd_step, a, taps, words, weights, panel_words, panels, sums);
}

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
