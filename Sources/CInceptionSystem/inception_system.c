// libc calls that Swift's Glibc module does not export.
#include "inception_system.h"
#include <stdlib.h>  // defines __GLIBC__ on glibc systems
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

int inception_release_free_memory(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}

int inception_map_allocations_from(int bytes) {
#if defined(__GLIBC__)
    return mallopt(M_MMAP_THRESHOLD, bytes);
#else
    (void)bytes;
    return 0;
#endif
}

static int cpu_levels(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, movbe = (c >> 22) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return 0;  // the OS saves xmm and ymm
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int bmi1 = (b >> 3) & 1, avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512cd = (b >> 28) & 1;
    int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    unsigned ea, eb, ec, ed;
    int lzcnt = __get_cpuid(0x80000001, &ea, &eb, &ec, &ed) ? (ec >> 5) & 1 : 0;
    int levels = 0;
    if (avx2 && fma && bmi1 && bmi2 && f16c && lzcnt && movbe) levels |= 1;
    // opmask, upper zmm and zmm16–31 state saved by the OS
    int avx512 = avx512f && avx512dq && avx512cd && avx512bw && avx512vl;
    if ((levels & 1) && avx512 && (xcr0_lo & 0xE0) == 0xE0) levels |= 2;
    return levels;
#else
    return 0;
#endif
}

static int cpu_reduced_precision(int levels) {
#if defined(__x86_64__)
    if (!(levels & 1)) return 0;
    unsigned a, b, c, d, xcr0_lo, xcr0_hi;
    __cpuid_count(7, 0, a, b, c, d);
    int vnni = (c >> 11) & 1, amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
    int max_leaf7 = (int)a;
    int bf16 = 0, avx_vnni = 0;
    if (max_leaf7 >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        bf16 = (a >> 5) & 1;
        avx_vnni = (a >> 4) & 1;
    }
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    int tiles = (xcr0_lo & 0x60000) == 0x60000;  // XTILECFG and XTILEDATA enabled by the OS
    int avx512 = (levels & 2) != 0;
    int amx = avx512 && amx_tile && tiles;
    return (avx512 && bf16) | ((avx512 && vnni) << 1) | ((amx && amx_bf16) << 2) | (avx_vnni << 3)
        | ((amx && amx_int8) << 4);
#else
    (void)levels;
    return 0;
#endif
}

int inception_cpu_features(void) {
    int levels = cpu_levels();
    return levels | cpu_reduced_precision(levels) << 2;
}
