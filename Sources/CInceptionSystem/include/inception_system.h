#ifndef INCEPTION_SYSTEM_H
#define INCEPTION_SYSTEM_H

/// Hands the allocator's free memory back to the system (glibc's malloc_trim); 0 where there is no such call.
int inception_release_free_memory(void);

/// Allocations of at least `bytes` get pages of their own that go back to the system when freed (glibc's
/// M_MMAP_THRESHOLD, which otherwise rises to 32 MB after the first large free); 0 where there is no such setting.
int inception_map_allocations_from(int bytes);

#endif
