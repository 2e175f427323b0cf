// libc calls that Swift's Glibc module does not export.
#include "inception_system.h"
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
