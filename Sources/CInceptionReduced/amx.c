// See include/inception_amx.h for the contract. The instructions are compiled with a target attribute only, so the
// file builds for every CPU; the engine calls them only after `inception_amx_usable()` said yes.
#include "inception_amx.h"
#include "inception_system.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define AMX_INSTRUCTIONS 1
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,amx-int8")))
#endif

// ---------------------------------------------------------------------------------------------------------------
// The emulator: eight tiles of 16 rows × 64 bytes per thread, as the tile unit keeps them per thread.

typedef struct {
    inception_amx_config config;
    uint8_t data[8][16][64];
} emulated_tiles;
static _Thread_local emulated_tiles emulated;

static void emulated_configure(const inception_amx_config *config) {
    emulated.config = *config;
    memset(emulated.data, 0, sizeof emulated.data);  // LDTILECFG zeroes every tile
}

static void emulated_load(int t, const void *base, long stride) {
    int rows = emulated.config.rows[t], colsb = emulated.config.colsb[t];
    memset(emulated.data[t], 0, sizeof emulated.data[t]);
    for (int r = 0; r < rows; r++) memcpy(emulated.data[t][r], (const uint8_t *)base + r * stride, (size_t)colsb);
}

static void emulated_store(int t, void *base, long stride) {
    int rows = emulated.config.rows[t], colsb = emulated.config.colsb[t];
    for (int r = 0; r < rows; r++) memcpy((uint8_t *)base + r * stride, emulated.data[t][r], (size_t)colsb);
}

static void emulated_zero(int t) { memset(emulated.data[t], 0, sizeof emulated.data[t]); }

static inline float flushed(float x) { return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x; }

static inline float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return flushed(f);
}

// TDPBF16PS on one row of C (16 lanes computed, `columns` kept), as scripts/amx_numerics.c measured it: per output
// two fresh partial sums (even and odd elements of each pair), each step a rounded FMA with denormals flushed, then
// c + (even + odd). Written over the 16 lanes so that the compiler vectorises it; compiled twice (with and without
// FMA instructions: without them, fmaf is the C library's exact software FMA).
static inline __attribute__((always_inline)) void bf16_row(float *c, const uint16_t *a, const uint16_t *b,
                                                           int columns, int pairs) {
    float even[16] = {0}, odd[16] = {0};
    for (int k = 0; k < pairs; k++) {
        float x0 = bf16_value(a[2 * k]), x1 = bf16_value(a[2 * k + 1]);
        for (int n = 0; n < 16; n++) {
            even[n] = flushed(fmaf(x0, bf16_value(b[k * 32 + 2 * n]), even[n]));
            odd[n] = flushed(fmaf(x1, bf16_value(b[k * 32 + 2 * n + 1]), odd[n]));
        }
    }
    for (int n = 0; n < columns; n++) c[n] = flushed(flushed(c[n]) + flushed(even[n] + odd[n]));
}
static void bf16_row_generic(float *c, const uint16_t *a, const uint16_t *b, int columns, int pairs) {
    bf16_row(c, a, b, columns, pairs);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void bf16_row_fma(float *c, const uint16_t *a, const uint16_t *b,
                                                             int columns, int pairs) {
    bf16_row(c, a, b, columns, pairs);
}

// The x86-64-v3 level of the package's one CPUID probe (AVX2 and FMA, the ymm state saved by the OS), asked once:
// CPUID traps to the hypervisor in a virtual machine, and the emulator asks for every row.
static int has_fma(void) {
    static int answer = -1;
    int known = __atomic_load_n(&answer, __ATOMIC_RELAXED);
    if (known < 0) {
        known = inception_cpu_features() & 1;
        __atomic_store_n(&answer, known, __ATOMIC_RELAXED);
    }
    return known;
}
#endif

static void emulated_dpbf16ps(int ct, int at, int bt) {
    int rows = emulated.config.rows[ct], columns = emulated.config.colsb[ct] / 4;
    int pairs = emulated.config.colsb[at] / 4;
    for (int m = 0; m < rows; m++) {
        float *c = (float *)(void *)emulated.data[ct][m];
        const uint16_t *a = (const uint16_t *)(const void *)emulated.data[at][m];
        const uint16_t *b = (const uint16_t *)(const void *)emulated.data[bt][0];
#if defined(__x86_64__)
        if (has_fma()) {
            bf16_row_fma(c, a, b, columns, pairs);
            continue;
        }
#endif
        bf16_row_generic(c, a, b, columns, pairs);
    }
}

// TDPBUSD: exact, wrapping 32-bit sums (their order does not matter modulo 2^32).
static void emulated_dpbusd(int ct, int at, int bt) {
    int rows = emulated.config.rows[ct], columns = emulated.config.colsb[ct] / 4;
    int quads = emulated.config.colsb[at] / 4;
    for (int m = 0; m < rows; m++) {
        uint32_t sums[16] = {0};
        const uint8_t *a = emulated.data[at][m];
        for (int k = 0; k < quads; k++) {
            const int8_t *b = (const int8_t *)(const void *)emulated.data[bt][k];
            for (int j = 0; j < 4; j++) {
                int32_t x = a[4 * k + j];
                for (int n = 0; n < 16; n++) sums[n] += (uint32_t)(x * b[4 * n + j]);
            }
        }
        int32_t *c = (int32_t *)(void *)emulated.data[ct][m];
        for (int n = 0; n < columns; n++) c[n] = (int32_t)((uint32_t)c[n] + sums[n]);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The instructions. Tile numbers are immediates, so the one-operation entry points (for tests) switch over them;
// the convolution tile names its tiles directly.

#if AMX_INSTRUCTIONS
#define TILE_SWITCH(t, OP)                                                                                      \
    switch (t) {                                                                                                \
    case 0: OP(0); break;                                                                                       \
    case 1: OP(1); break;                                                                                       \
    case 2: OP(2); break;                                                                                       \
    case 3: OP(3); break;                                                                                       \
    case 4: OP(4); break;                                                                                       \
    case 5: OP(5); break;                                                                                       \
    case 6: OP(6); break;                                                                                       \
    case 7: OP(7); break;                                                                                       \
    }
AMX_TARGET static void hardware_load(int t, const void *base, long stride) {
#define LOAD_ONE(i) _tile_loadd(i, base, stride)
    TILE_SWITCH(t, LOAD_ONE)
}
AMX_TARGET static void hardware_store(int t, void *base, long stride) {
#define STORE_ONE(i) _tile_stored(i, base, stride)
    TILE_SWITCH(t, STORE_ONE)
}
AMX_TARGET static void hardware_zero(int t) {
#define ZERO_ONE(i) _tile_zero(i)
    TILE_SWITCH(t, ZERO_ONE)
}
// One-operation products take the convolution tile's assignment: c in 0–3, a in 4–5, b in 6–7.
#define PRODUCT_SWITCH(INSTRUCTION, c, a, b)                                                                    \
    {                                                                                                           \
        int index = ((c) & 3) * 4 + ((a) & 1) * 2 + ((b) & 1);                                                  \
        if ((c) > 3 || (a) < 4 || (a) > 5 || (b) < 6 || (b) > 7) return;                                        \
        switch (index) {                                                                                        \
        case 0: INSTRUCTION(0, 4, 6); break;  case 1: INSTRUCTION(0, 4, 7); break;                               \
        case 2: INSTRUCTION(0, 5, 6); break;  case 3: INSTRUCTION(0, 5, 7); break;                               \
        case 4: INSTRUCTION(1, 4, 6); break;  case 5: INSTRUCTION(1, 4, 7); break;                               \
        case 6: INSTRUCTION(1, 5, 6); break;  case 7: INSTRUCTION(1, 5, 7); break;                               \
        case 8: INSTRUCTION(2, 4, 6); break;  case 9: INSTRUCTION(2, 4, 7); break;                               \
        case 10: INSTRUCTION(2, 5, 6); break; case 11: INSTRUCTION(2, 5, 7); break;                              \
        case 12: INSTRUCTION(3, 4, 6); break; case 13: INSTRUCTION(3, 4, 7); break;                              \
        case 14: INSTRUCTION(3, 5, 6); break; case 15: INSTRUCTION(3, 5, 7); break;                              \
        }                                                                                                       \
    }
AMX_TARGET static void hardware_dpbf16ps(int c, int a, int b) PRODUCT_SWITCH(_tile_dpbf16ps, c, a, b)
AMX_TARGET static void hardware_dpbusd(int c, int a, int b) PRODUCT_SWITCH(_tile_dpbusd, c, a, b)
#endif

int inception_amx_usable(void) {
#if AMX_INSTRUCTIONS
    // AMX-BF16 (16) and AMX-INT8 (64) with the tile state saved by the OS, from the package's one CPUID probe.
    if ((inception_cpu_features() & (16 | 64)) != (16 | 64)) return 1;
    // ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18: once per process, for all its threads.
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 0 : 2;
#else
    return 1;
#endif
}

#if AMX_INSTRUCTIONS
#define ON_BACKEND(backend, hardware_call, emulated_call)                                                       \
    if ((backend) == INCEPTION_AMX_INSTRUCTIONS) {                                                              \
        hardware_call;                                                                                          \
    } else {                                                                                                    \
        emulated_call;                                                                                          \
    }
AMX_TARGET static void hardware_configure(const inception_amx_config *config) { _tile_loadconfig(config); }
AMX_TARGET static void hardware_release(void) { _tile_release(); }
#else
#define ON_BACKEND(backend, hardware_call, emulated_call) emulated_call;
#endif

void inception_amx_configure(int backend, const inception_amx_config *config) {
    ON_BACKEND(backend, hardware_configure(config), emulated_configure(config))
}
void inception_amx_load(int backend, int tile, const void *base, long stride) {
    ON_BACKEND(backend, hardware_load(tile, base, stride), emulated_load(tile, base, stride))
}
void inception_amx_store(int backend, int tile, void *base, long stride) {
    ON_BACKEND(backend, hardware_store(tile, base, stride), emulated_store(tile, base, stride))
}
void inception_amx_zero(int backend, int tile) { ON_BACKEND(backend, hardware_zero(tile), emulated_zero(tile)) }
void inception_amx_dpbf16ps(int backend, int c, int a, int b) {
    ON_BACKEND(backend, hardware_dpbf16ps(c, a, b), emulated_dpbf16ps(c, a, b))
}
void inception_amx_dpbusd(int backend, int c, int a, int b) {
    ON_BACKEND(backend, hardware_dpbusd(c, a, b), emulated_dpbusd(c, a, b))
}
void inception_amx_release(int backend) {
    ON_BACKEND(backend, hardware_release(), memset(&emulated, 0, sizeof emulated))
}

// ---------------------------------------------------------------------------------------------------------------
// The convolution tile, written once against the layer's operations.

// Per thread, the rows of A gathered from the indirection table (32 × depth_words words), freed with the thread.
static pthread_key_t gather_key;
static pthread_once_t gather_once = PTHREAD_ONCE_INIT;
typedef struct {
    long capacity;
    uint32_t words[];
} gather_buffer;
static void make_gather_key(void) { pthread_key_create(&gather_key, free); }

// The tile's A rows: in place when they are 32 consecutive pixels of a one-tap depth that fills whole tile rows,
// else gathered (taps in order, then zeros to depth_words). Returns the rows and their stride in bytes; NULL when
// no memory was left for the buffer.
static const uint8_t *a_rows(const uint32_t *const *a, long taps, long words, long depth_words, long *stride) {
    if (taps == 1 && words == depth_words) {
        int consecutive = 1;
        for (long r = 1; r < 32; r++) consecutive &= a[r] == a[0] + r * words;
        if (consecutive) {
            *stride = words * 4;
            return (const uint8_t *)a[0];
        }
    }
    pthread_once(&gather_once, make_gather_key);
    gather_buffer *buffer = pthread_getspecific(gather_key);
    long needed = 32 * depth_words;
    if (!buffer || buffer->capacity < needed) {
        free(buffer);
        buffer = malloc(sizeof(gather_buffer) + (size_t)needed * 4);
        pthread_setspecific(gather_key, buffer);
        if (!buffer) return NULL;
        buffer->capacity = needed;
    }
    for (long r = 0; r < 32; r++) {
        uint32_t *row = buffer->words + r * depth_words;
        for (long t = 0; t < taps; t++) memcpy(row + t * words, a[t * 32 + r], (size_t)words * 4);
        memset(row + taps * words, 0, (size_t)(depth_words - taps * words) * 4);
    }
    *stride = depth_words * 4;
    return (const uint8_t *)buffer->words;
}

// The layer's operations as the convolution tile calls them: the emulator's, or the instructions' (whose tile
// numbers become immediates once the tile is compiled for them: every call below names its tiles as constants).
typedef struct {
    void (*configure)(const inception_amx_config *config);
    void (*load)(int tile, const void *base, long stride);
    void (*store)(int tile, void *base, long stride);
    void (*zero)(int tile);
    void (*product)(int c, int a, int b);
} tile_operations;

// 2 × 2 accumulators (tiles 0–3: rows 0–15 and 16–31 × the pair's two panels), A in tiles 4–5, B in 6–7. Always
// inlined, so each backend's instantiation calls its operations directly.
static inline __attribute__((always_inline)) void convolution_tile(const tile_operations *op, const uint8_t *a,
                                                                   long a_stride, const uint32_t *weights,
                                                                   long depth_words, long panels, float *sums) {
    inception_amx_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) (config.rows[t] = 16, config.colsb[t] = 64);
    op->configure(&config);
    long blocks = depth_words / 16;
    const uint8_t *a_low = a, *a_high = a + 16 * a_stride;
    for (long q = 0; q < panels; q += 2) {
        const uint8_t *b0 = (const uint8_t *)(weights + q * depth_words * 16), *b1 = b0 + depth_words * 64;
        float *s = sums + q * 32 * 16;
        op->zero(0);
        op->zero(2);
        if (q + 1 < panels) {
            op->zero(1);
            op->zero(3);
            for (long k = 0; k < blocks; k++) {
                op->load(4, a_low + k * 64, a_stride);
                op->load(5, a_high + k * 64, a_stride);
                op->load(6, b0 + k * 1024, 64);
                op->load(7, b1 + k * 1024, 64);
                op->product(0, 4, 6);
                op->product(1, 4, 7);
                op->product(2, 5, 6);
                op->product(3, 5, 7);
            }
            op->store(1, s + 32 * 16, 64);
            op->store(3, s + 48 * 16, 64);
        } else {
            for (long k = 0; k < blocks; k++) {
                op->load(4, a_low + k * 64, a_stride);
                op->load(5, a_high + k * 64, a_stride);
                op->load(6, b0 + k * 1024, 64);
                op->product(0, 4, 6);
                op->product(2, 5, 6);
            }
        }
        op->store(0, s, 64);
        op->store(2, s + 16 * 16, 64);
    }
}

static void emulated_bf16_tile(const uint8_t *a, long a_stride, const uint32_t *weights, long depth_words,
                               long panels, float *sums) {
    static const tile_operations emulator = {emulated_configure, emulated_load, emulated_store, emulated_zero,
                                             emulated_dpbf16ps};
    convolution_tile(&emulator, a, a_stride, weights, depth_words, panels, sums);
}
static void emulated_int8_tile(const uint8_t *a, long a_stride, const uint32_t *weights, long depth_words,
                               long panels, float *sums) {
    static const tile_operations emulator = {emulated_configure, emulated_load, emulated_store, emulated_zero,
                                             emulated_dpbusd};
    convolution_tile(&emulator, a, a_stride, weights, depth_words, panels, sums);
}
#if AMX_INSTRUCTIONS
AMX_TARGET static void hardware_bf16_tile(const uint8_t *a, long a_stride, const uint32_t *weights,
                                          long depth_words, long panels, float *sums) {
    static const tile_operations instructions = {hardware_configure, hardware_load, hardware_store, hardware_zero,
                                                 hardware_dpbf16ps};
    convolution_tile(&instructions, a, a_stride, weights, depth_words, panels, sums);
}
AMX_TARGET static void hardware_int8_tile(const uint8_t *a, long a_stride, const uint32_t *weights,
                                          long depth_words, long panels, float *sums) {
    static const tile_operations instructions = {hardware_configure, hardware_load, hardware_store, hardware_zero,
                                                 hardware_dpbusd};
    convolution_tile(&instructions, a, a_stride, weights, depth_words, panels, sums);
}
#endif

void inception_amx_bf16_tile(int backend, const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                             long depth_words, long panels, float *sums) {
    long stride;
    const uint8_t *rows = a_rows(a, taps, words, depth_words, &stride);
    if (!rows) abort();  // a few hundred KB could not be allocated: nothing sensible is left to do
    ON_BACKEND(backend, hardware_bf16_tile(rows, stride, weights, depth_words, panels, sums),
               emulated_bf16_tile(rows, stride, weights, depth_words, panels, sums))
}

void inception_amx_int8_tile(int backend, const uint32_t *const *a, long taps, long words, const uint32_t *weights,
                             long depth_words, long panels, float *sums) {
    long stride;
    const uint8_t *rows = a_rows(a, taps, words, depth_words, &stride);
    if (!rows) abort();
    ON_BACKEND(backend, hardware_int8_tile(rows, stride, weights, depth_words, panels, sums),
               emulated_int8_tile(rows, stride, weights, depth_words, panels, sums))
    // The exact integer sums, as floats (round to nearest, as VCVTDQ2PS does).
    for (long i = 0; i < panels * 32 * 16; i++) {
        int32_t v;
        memcpy(&v, sums + i, 4);
        sums[i] = (float)v;
    }
}

void inception_bf16_from_float(const float *source, uint16_t *destination, long count) {
    for (long i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, source + i, 4);
        destination[i] = isnan(source[i]) ? (uint16_t)((bits >> 16) | 0x40)
                                          : (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
}
