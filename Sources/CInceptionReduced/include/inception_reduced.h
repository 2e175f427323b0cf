#ifndef INCEPTION_REDUCED_H
#define INCEPTION_REDUCED_H

#include <stdint.h>

// The reduced-precision micro-kernels: instructions Swift cannot express (VDPBF16PS, VPDPBUSD, VPMADDWD). Each
// sits beside a Swift reference of the same contract (InceptionKernels/ReducedPrecision.swift), which the tests hold
// them to; the engine calls a function only where `inception_cpu_features` / the kernel level says the CPU
// runs it.
//
// Contract, shared by all: a tile of 6 rows × `panels` panels of 16 output channels. The depth is `taps` × `words`
// 32-bit words; a word holds two bf16 values (bf16), four u8 activations (int8 quads, VNNI) or two u8 activations
// zero-extended to 16 bits (int8 pairs, AVX2). `a[tap · 6 + r]` points at row r's `words` words for that tap.
// Panel q's weights start at `weights + q · panel_words · 16` words (panel_words = taps · words): per depth word, 16
// lanes of one word each (two bf16 / four s8 / two s16 weights of that lane's output channel, in depth order).
// Writes the sums, as floats, to `sums[(q · 6 + r) · 16 + lane]`.

void inception_bf16_tile_avx512(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                long panel_words, long panels, float *sums);

void inception_int8_quads_tile_vnni(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                    long panel_words, long panels, float *sums);

void inception_int8_quads_tile_avxvnni(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                       long panel_words, long panels, float *sums);

void inception_int8_pairs_tile_avx2(const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                                    long panel_words, long panels, float *sums);

/// Float to bf16, round to nearest even (VCVTNEPS2BF16), any count.
void inception_bf16_from_float_avx512(const float *source, uint16_t *destination, long count);

/// Activations to unsigned integers: min(max(round(x · inverse_scale) + zero_point, 0), 255), rounding to nearest
/// even, as bytes (`_u8`) or as 16-bit integers (`_u16`, for the AVX2 pairs); any count.
void inception_quantize_u8_avx2(const float *source, uint8_t *destination, long count, float inverse_scale,
                                float zero_point);
void inception_quantize_u16_avx2(const float *source, uint16_t *destination, long count, float inverse_scale,
                                 float zero_point);

#endif
