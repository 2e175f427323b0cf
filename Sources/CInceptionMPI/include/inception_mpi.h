#ifndef INCEPTION_MPI_H
#define INCEPTION_MPI_H

#include <stddef.h>

/* Open MPI, loaded at run time (dlopen), so that the package builds and runs without MPI installed. Open MPI's
   handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are the addresses of its predefined objects, looked up by
   name here; MPICH's integer handles are not supported. Every function returns 0 or an MPI error code. */

/* Loads the library (INCEPTION_MPI_LIBRARY, else libmpi.so.40 / libmpi.so); on failure writes why to `error`. */
int inception_mpi_load(char *error, size_t capacity);
/* MPI_Init_thread (MPI_THREAD_SERIALIZED), errors returned rather than fatal; the rank and the number of ranks. */
int inception_mpi_init(int *rank, int *size);
/* In-place sums over all ranks (any count: sent in pieces of at most 2^30 elements). */
int inception_mpi_sum_floats(float *values, long count);
int inception_mpi_sum_doubles(double *values, long count);
int inception_mpi_sum_longs(long long *values, long count);
/* Every rank's `count` bytes into `all` on rank `root`, in rank order; `counts` (every rank's count, read on the
   root) must total at most 2^30 bytes. */
int inception_mpi_gather(const void *bytes, long count, void *all, const long long *counts, int root);
/* Rank `root`'s bytes to every rank. */
int inception_mpi_broadcast(void *bytes, long count, int root);
int inception_mpi_barrier(void);
/* MPI's description of an error code. */
void inception_mpi_error_string(int code, char *text, size_t capacity);
int inception_mpi_finalize(void);

#endif
