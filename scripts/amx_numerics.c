// The AMX numerics probe (the team's, kept here so the docs cite only what a clone has; docs/precision.md has its
// result). On a CPU with AMX (amx_tile in lscpu), Linux >= 5.16: cc -O2 -march=native -ffp-contract=off -o amxn \
// scripts/amx_numerics.c -lm && ./amxn
//
// What arithmetic do AMX's TDPBF16PS and TDPBUSD really do? Runs the instructions on random tiles and compares
// every output bit with a plain-C emulation. Needs a CPU with amx_tile/amx_bf16/amx_int8 (lscpu) and Linux >= 5.16.
//
// TDPBF16PS (matches the SDM's newer pseudo-code, bit for bit, on family 6 model 207):
//   per output (m, n) and per instruction: even = 0, odd = 0 (fp32);
//   for each pair k in order: even = fma(a[m][2k], b[k][2n], even); odd = fma(a[m][2k+1], b[k][2n+1], odd);
//   then c[m][n] = c[m][n] + (even + odd). Every step rounds to nearest even, denormal inputs and outputs are zero.
// The SDM's older pseudo-code (c += a0*b0; c += a1*b1, pair by pair) does NOT match: most outputs differ.
// TDPBUSD: u8 x s8, four products per 32-bit lane, exact 32-bit integer sums (wrapping).
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <math.h>
#include <sys/syscall.h>
#include <unistd.h>
typedef struct { uint8_t palette, start; uint8_t reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } tile_config;
static uint64_t state = 88172645463325252ull;
static uint64_t next(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }
static float bf16_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float flush(float f) { return (f != 0 && fabsf(f) < 0x1p-126f) ? copysignf(0.0f, f) : f; }
// random value with exponent in [emin, emax] (below -126: a denormal)
static uint16_t random_bf16(int emin, int emax) {
  int e = emin + (int)(next() % (unsigned)(emax - emin + 1));
  uint16_t sign = (uint16_t)((next() & 1) << 15), mant = next() & 0x7f;
  return e < -126 ? (sign | mant) : (uint16_t)(sign | ((e + 127) << 7) | mant);
}
static float random_f32(int emin, int emax) {
  int e = emin + (int)(next() % (unsigned)(emax - emin + 1));
  uint32_t sign = (uint32_t)(next() & 1) << 31, mant = next() & 0x7fffff;
  uint32_t u = e < -126 ? (sign | mant) : (sign | ((uint32_t)(e + 127) << 23) | mant);
  float f; memcpy(&f, &u, 4); return f;
}
static uint16_t A[16][32], B[16][32];   // A: 16 rows x 16 bf16 pairs; B: 16 pair-rows x 16 columns x 2
static float C[16][16], hardware[16][16];
static void run_tdpbf16ps(int pairs, int calls) {
  tile_config cfg; memset(&cfg, 0, sizeof cfg); cfg.palette = 1;
  cfg.rows[0] = 16; cfg.colsb[0] = 64; cfg.rows[1] = 16; cfg.colsb[1] = (uint16_t)(pairs * 4);
  cfg.rows[2] = (uint8_t)pairs; cfg.colsb[2] = 64;
  _tile_loadconfig(&cfg);
  _tile_loadd(0, C, 64); _tile_loadd(1, A, 64); _tile_loadd(2, B, 64);
  for (int i = 0; i < calls; i++) _tile_dpbf16ps(0, 1, 2);
  _tile_stored(0, hardware, 64); _tile_release();
}
static float emulate_tdpbf16ps(float c, int m, int n, int pairs) {
  float even = 0, odd = 0;
  for (int k = 0; k < pairs; k++) {
    even = flush(fmaf(flush(bf16_to_f32(A[m][2 * k])), flush(bf16_to_f32(B[k][2 * n])), even));
    odd = flush(fmaf(flush(bf16_to_f32(A[m][2 * k + 1])), flush(bf16_to_f32(B[k][2 * n + 1])), odd));
  }
  return flush(flush(c) + flush(even + odd));
}
static float older_sdm(float c, int m, int n, int pairs) {
  for (int k = 0; k < pairs; k++) {
    c = c + bf16_to_f32(A[m][2 * k]) * bf16_to_f32(B[k][2 * n]);
    c = c + bf16_to_f32(A[m][2 * k + 1]) * bf16_to_f32(B[k][2 * n + 1]);
  }
  return c;
}
static void bf16_case(const char *name, int pairs, int calls, int emin, int emax, int cmin, int cmax) {
  long differ = 0, differ_old = 0, total = 0;
  for (int t = 0; t < 300; t++) {
    for (int m = 0; m < 16; m++) for (int j = 0; j < 32; j++) { A[m][j] = random_bf16(emin, emax); B[m][j] = random_bf16(emin, emax); }
    for (int m = 0; m < 16; m++) for (int n = 0; n < 16; n++) C[m][n] = random_f32(cmin, cmax);
    run_tdpbf16ps(pairs, calls);
    for (int m = 0; m < 16; m++) for (int n = 0; n < 16; n++) {
      float e = C[m][n], o = C[m][n];
      for (int i = 0; i < calls; i++) { e = emulate_tdpbf16ps(e, m, n, pairs); o = older_sdm(o, m, n, pairs); }
      total++; differ += bits(e) != bits(hardware[m][n]); differ_old += bits(o) != bits(hardware[m][n]);
    }
  }
  printf("TDPBF16PS %-34s pairs %2d x %d calls: emulation differs in %ld of %ld (older pseudo-code: %ld)\n",
         name, pairs, calls, differ, total, differ_old);
}
static void int8_case(void) {
  static uint8_t a[16][64]; static int8_t b[16][64]; static int32_t c[16][16], hw[16][16];
  long differ = 0, total = 0;
  for (int t = 0; t < 300; t++) {
    for (int m = 0; m < 16; m++) for (int j = 0; j < 64; j++) { a[m][j] = (uint8_t)next(); b[m][j] = (int8_t)next(); }
    for (int m = 0; m < 16; m++) for (int n = 0; n < 16; n++) c[m][n] = (int32_t)next();
    tile_config cfg; memset(&cfg, 0, sizeof cfg); cfg.palette = 1;
    for (int i = 0; i < 3; i++) { cfg.rows[i] = 16; cfg.colsb[i] = 64; }
    _tile_loadconfig(&cfg);
    _tile_loadd(0, c, 64); _tile_loadd(1, a, 64); _tile_loadd(2, b, 64); _tile_dpbusd(0, 1, 2);
    _tile_stored(0, hw, 64); _tile_release();
    for (int m = 0; m < 16; m++) for (int n = 0; n < 16; n++) {
      uint32_t s = (uint32_t)c[m][n];
      for (int k = 0; k < 16; k++) for (int j = 0; j < 4; j++) s += (uint32_t)((int32_t)a[m][4 * k + j] * b[k][4 * n + j]);
      total++; differ += (int32_t)s != hw[m][n];
    }
  }
  printf("TDPBUSD   exact wrapping int32 sums: emulation differs in %ld of %ld\n", differ, total);
}
int main(void) {
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */)) { perror("arch_prctl"); return 1; }
  bf16_case("values 2^[-4,4], c 2^[-4,4]", 1, 1, -4, 4, -4, 4);
  bf16_case("values 2^[-4,4], c 2^[-4,4]", 16, 1, -4, 4, -4, 4);
  bf16_case("values 2^[-4,4], c 2^[-4,4]", 16, 3, -4, 4, -4, 4);
  bf16_case("values 2^[-2,2], c 2^[8,10]", 7, 2, -2, 2, 8, 10);
  bf16_case("values 2^[-30,30], c 2^[-60,60]", 16, 1, -30, 30, -60, 60);
  bf16_case("denormal inputs 2^[-140,-120]", 16, 1, -140, -120, -4, 4);
  bf16_case("denormal products 2^[-66,-60]", 16, 1, -66, -60, -130, -120);
  bf16_case("overflow 2^[60,64]", 16, 1, 60, 64, 120, 127);
  int8_case();
  return 0;
}
