#include "inception_mpi.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *Handle;  /* MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler: pointers in Open MPI */

static struct {
    int (*init_thread)(int *, char ***, int, int *);
    int (*comm_rank)(Handle, int *);
    int (*comm_size)(Handle, int *);
    int (*allreduce)(const void *, void *, int, Handle, Handle, Handle);
    int (*bcast)(void *, int, Handle, int, Handle);
    int (*barrier)(Handle);
    int (*gatherv)(const void *, int, Handle, void *, const int *, const int *, Handle, int, Handle);
    int (*set_errhandler)(Handle, Handle);
    int (*error_string)(int, char *, int *);
    int (*finalize)(void);
    Handle world, float_type, double_type, int64_type, byte_type, sum, errors_return;
} mpi;

#define MPI_IN_PLACE_ ((void *)1)
#define MPI_THREAD_SERIALIZED_ 2
#define PIECE (1L << 30)
#define MPI_ERR_COUNT_ 2  /* Open MPI's MPI_ERR_COUNT */

static int resolve(void *library, const char *name, void **slot, char *error, size_t capacity) {
    *slot = dlsym(library, name);
    if (*slot == NULL) {
        snprintf(error, capacity, "the MPI library has no %s (Open MPI is required)", name);
        return -1;
    }
    return 0;
}

int inception_mpi_load(char *error, size_t capacity) {
    const char *chosen = getenv("INCEPTION_MPI_LIBRARY");
    const char *names[] = {chosen, "libmpi.so.40", "libmpi.so"};
    void *library = NULL;
    for (int i = 0; i < 3 && library == NULL; i++) {
        /* RTLD_GLOBAL: Open MPI's own plugins, loaded later, need libmpi's symbols. */
        if (names[i] != NULL) library = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    }
    if (library == NULL) {
        snprintf(error, capacity, "cannot load Open MPI's libmpi (%s); install openmpi-bin and libopenmpi-dev, "
                 "or set INCEPTION_MPI_LIBRARY", dlerror());
        return -1;
    }
    struct { const char *name; void **slot; } symbols[] = {
        {"MPI_Init_thread", (void **)&mpi.init_thread}, {"MPI_Comm_rank", (void **)&mpi.comm_rank},
        {"MPI_Comm_size", (void **)&mpi.comm_size}, {"MPI_Allreduce", (void **)&mpi.allreduce},
        {"MPI_Bcast", (void **)&mpi.bcast}, {"MPI_Barrier", (void **)&mpi.barrier},
        {"MPI_Gatherv", (void **)&mpi.gatherv}, {"ompi_mpi_int64_t", &mpi.int64_type},
        {"MPI_Comm_set_errhandler", (void **)&mpi.set_errhandler},
        {"MPI_Error_string", (void **)&mpi.error_string}, {"MPI_Finalize", (void **)&mpi.finalize},
        {"ompi_mpi_comm_world", &mpi.world}, {"ompi_mpi_float", &mpi.float_type},
        {"ompi_mpi_double", &mpi.double_type}, {"ompi_mpi_byte", &mpi.byte_type}, {"ompi_mpi_op_sum", &mpi.sum},
        {"ompi_mpi_errors_return", &mpi.errors_return},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        if (resolve(library, symbols[i].name, symbols[i].slot, error, capacity) != 0) return -1;
    }
    return 0;
}

int inception_mpi_init(int *rank, int *size) {
    int provided = 0;
    int status = mpi.init_thread(NULL, NULL, MPI_THREAD_SERIALIZED_, &provided);
    if (status != 0) return status;
    if ((status = mpi.set_errhandler(mpi.world, mpi.errors_return)) != 0) return status;
    if ((status = mpi.comm_rank(mpi.world, rank)) != 0) return status;
    return mpi.comm_size(mpi.world, size);
}

static int sum(void *values, long count, Handle type, size_t element) {
    for (long done = 0; done < count; done += PIECE) {
        long piece = count - done < PIECE ? count - done : PIECE;
        int status = mpi.allreduce(MPI_IN_PLACE_, (char *)values + done * element, (int)piece, type, mpi.sum,
                                   mpi.world);
        if (status != 0) return status;
    }
    return 0;
}

int inception_mpi_sum_floats(float *values, long count) { return sum(values, count, mpi.float_type, 4); }
int inception_mpi_sum_doubles(double *values, long count) { return sum(values, count, mpi.double_type, 8); }

int inception_mpi_sum_longs(long long *values, long count) { return sum(values, count, mpi.int64_type, 8); }

int inception_mpi_gather(const void *bytes, long count, void *all, const long long *counts, int root) {
    int rank = 0, size = 0, status;
    if ((status = mpi.comm_rank(mpi.world, &rank)) != 0 || (status = mpi.comm_size(mpi.world, &size)) != 0) {
        return status;
    }
    if (count > PIECE) return MPI_ERR_COUNT_;
    int *lengths = NULL, *offsets = NULL;
    if (rank == root) {
        lengths = calloc((size_t)size, sizeof *lengths);
        offsets = calloc((size_t)size, sizeof *offsets);
        long long total = 0;
        for (int r = 0; r < size && lengths != NULL && offsets != NULL; r++) {
            if (counts[r] > PIECE || total + counts[r] > PIECE) { total = -1; break; }
            lengths[r] = (int)counts[r];
            offsets[r] = (int)total;
            total += counts[r];
        }
        if (lengths == NULL || offsets == NULL || total < 0) {
            free(lengths);
            free(offsets);
            return MPI_ERR_COUNT_;
        }
    }
    status = mpi.gatherv(bytes, (int)count, mpi.byte_type, all, lengths, offsets, mpi.byte_type, root, mpi.world);
    free(lengths);
    free(offsets);
    return status;
}

int inception_mpi_broadcast(void *bytes, long count, int root) {
    for (long done = 0; done < count; done += PIECE) {
        long piece = count - done < PIECE ? count - done : PIECE;
        int status = mpi.bcast((char *)bytes + done, (int)piece, mpi.byte_type, root, mpi.world);
        if (status != 0) return status;
    }
    return 0;
}

int inception_mpi_barrier(void) { return mpi.barrier(mpi.world); }

void inception_mpi_error_string(int code, char *text, size_t capacity) {
    char buffer[1024];
    int length = 0;
    if (mpi.error_string == NULL || mpi.error_string(code, buffer, &length) != 0) length = 0;
    buffer[length < (int)sizeof buffer ? length : (int)sizeof buffer - 1] = 0;
    snprintf(text, capacity, "%s", length > 0 ? buffer : "unknown MPI error");
}

int inception_mpi_finalize(void) { return mpi.finalize(); }
