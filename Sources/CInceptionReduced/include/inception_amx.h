#ifndef INCEPTION_AMX_H
#define INCEPTION_AMX_H

#include <stdint.h>

// The AMX tile layer: the few tile operations the engine uses (configure, load, store, zero, TDPBF16PS, TDPBUSD),
// each with two implementations — the instructions, and an emulator of exactly what they compute on plain memory
// (measured bit for bit on a Sapphire Rapids Xeon: docs/precision.md, "AMX: the tile unit, and its emulator"). The
// convolution tile below is written once against the layer and instantiated for both, so the emulator runs the same
// kernel the tile unit runs and the tests check it on every CPU.
//
// `backend`: INCEPTION_AMX_EMULATOR on any CPU; INCEPTION_AMX_INSTRUCTIONS only after `inception_amx_usable()`
// said yes in this process (Linux must grant the tile state first).

enum { INCEPTION_AMX_EMULATOR = 0, INCEPTION_AMX_INSTRUCTIONS = 1 };

/// The palette-1 tile configuration: 64 bytes, as LDTILECFG reads it.
typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} inception_amx_config;

/// Whether this process may run the tile instructions: 0 yes (CPUID has AMX-TILE, AMX-BF16 and AMX-INT8, XCR0 has
/// the tile state, and Linux granted it to the process: arch_prctl ARCH_REQ_XCOMP_PERM, asked once); 1 the CPU or
/// its operating system has no AMX (or this is not x86-64 Linux); 2 the CPU has it but Linux refused the request.
int inception_amx_usable(void);

void inception_amx_configure(int backend, const inception_amx_config *config);
/// Tile `tile` ← rows[tile] rows of colsb[tile] bytes from `base`, `stride` bytes apart (the rest of the tile zero).
void inception_amx_load(int backend, int tile, const void *base, long stride);
void inception_amx_store(int backend, int tile, void *base, long stride);
void inception_amx_zero(int backend, int tile);
/// c += a · b over bf16 pairs (fp32 c): per output, two fresh fp32 partial sums over the pairs (even and odd
/// elements), each step one rounded FMA, denormal inputs and results zero; then c + (even + odd).
void inception_amx_dpbf16ps(int backend, int c, int a, int b);
/// c += a · b over quads of u8 (a) × s8 (b), exact wrapping 32-bit sums.
void inception_amx_dpbusd(int backend, int c, int a, int b);
/// Gives the tile state back (TILERELEASE).
void inception_amx_release(int backend);

// The convolution tile, for either backend: 32 rows (two A tiles of 16 output pixels) × `panels` panels of 16
// output channels (two at a time: 2 × 2 accumulator tiles). The depth is `taps` × `words` 32-bit words — a word
// holds two bf16 or four u8 activations — padded with zeros to `depth_words`, a multiple of 16 (one tile row of 64
// bytes). `a[tap · 32 + r]` points at row r's `words` words for that tap; rows that are 32 consecutive pixels of
// one tap-less layer are read in place, others are gathered into a per-thread buffer. Panel q's weights start at
// `weights + q · depth_words · 16` words, per depth word 16 words (one per output channel): the VNNI layout, so
// the B tile of depth block k is 1,024 contiguous bytes. Writes the sums, as floats (int8: the exact int32 sums
// converted), to `sums[(q · 32 + r) · 16 + lane]`.
void inception_amx_bf16_tile(int backend, const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                             long depth_words, long panels, float *sums);
void inception_amx_int8_tile(int backend, const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                             long depth_words, long panels, float *sums);

/// Float to bf16, round to nearest even, on any CPU (what VCVTNEPS2BF16 gives for finite inputs; its flushing of
/// denormal inputs does not matter to TDPBF16PS, which flushes them itself).
void inception_bf16_from_float(const float *source, uint16_t *destination, long count);

#endif
