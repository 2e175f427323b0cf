#ifndef INCEPTION_SYSTEM_H
#define INCEPTION_SYSTEM_H

/// Hands the allocator's free memory back to the system (glibc's malloc_trim); 0 where there is no such call.
int inception_release_free_memory(void);

#endif
