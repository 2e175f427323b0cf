#ifndef INCEPTION_SYSTEM_H
#define INCEPTION_SYSTEM_H

/// Hands the allocator's free memory back to the system (glibc's malloc_trim); 0 where there is no such call.
int inception_release_free_memory(void);

/// Allocations of at least `bytes` get pages of their own that go back to the system when freed (glibc's
/// M_MMAP_THRESHOLD, which otherwise rises to 32 MB after the first large free); 0 where there is no such setting.
int inception_map_allocations_from(int bytes);

/// What this CPU and its operating system support, as bits, asked once by the engine (`CPUFeatures`, which names
/// them): the x86-64 levels — 1 = x86-64-v3 (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE, and the OS saves the ymm state),
/// 2 = x86-64-v4 (AVX-512 F/BW/CD/DQ/VL, and the OS saves the zmm state) — and the reduced-precision instructions:
/// 4 = AVX512-BF16 (VDPBF16PS, with the AVX-512 level), 8 = AVX512-VNNI (VPDPBUSD on zmm, with the AVX-512 level),
/// 16 = AMX-BF16 (tile state saved by the OS; Linux also wants it requested: `inception_amx_usable` in
/// CInceptionReduced), 32 = AVX-VNNI (VPDPBUSD on ymm, with the AVX2 level), 64 = AMX-INT8 (with AMX-BF16's
/// conditions). 0 elsewhere (arm64, older x86-64). The one CPUID probe of the package: C (amx.c) asks it too.
int inception_cpu_features(void);

#endif
