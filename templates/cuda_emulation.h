/*
 * cuda_emulation.h: runs corrgen's CUDA kernel source on the CPU; part of corrgen, copied
 * next to the source of each emulated build. Do not edit the copies.
 *
 * Force-included (g++ -x c++ -include cuda_emulation.h) ahead of the exact conv2d_cuda.cu
 * that nvcc compiles, it stands in for <cuda_runtime.h>:
 *
 *  - __global__, __device__, __host__ and __forceinline__ become plain C++;
 *  - blockIdx, threadIdx, blockDim and gridDim are thread-local globals;
 *  - CORRGEN_LAUNCH(kernel, grid, block, stream, args...) checks the launch configuration
 *    against CUDA's limits (an invalid one sets cudaErrorInvalidConfiguration for
 *    cudaGetLastError, as a real launch does) and then calls the kernel once per thread:
 *    blocks in order, threads in order within a block, on the calling host thread;
 *  - device memory is host memory: cudaMalloc is malloc, cudaMemcpy is memcpy, streams and
 *    events are accepted and ignored (everything runs to completion at once), and there is
 *    one device.
 *
 * Running the threads one after another is faithful only for kernels whose threads do not
 * communicate: no __shared__ memory, no __syncthreads, no warp functions, no atomics, no
 * element written by two threads. corrgen's kernels are written that way (see the comment
 * at the top of conv2d_cuda.cu); using any of those here is a compile error, as none of them
 * is defined.
 */
#ifndef CORRGEN_CUDA_EMULATION_H
#define CORRGEN_CUDA_EMULATION_H

#define CORRGEN_CUDA_EMULATION 1

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

static thread_local uint3 blockIdx, threadIdx;
static thread_local dim3 blockDim, gridDim;

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaMemoryType {
    cudaMemoryTypeUnregistered = 0,
    cudaMemoryTypeHost = 1,
    cudaMemoryTypeDevice = 2,
    cudaMemoryTypeManaged = 3,
};

struct cudaPointerAttributes {
    enum cudaMemoryType type;
    int device;
    void *devicePointer;
    void *hostPointer;
};

struct cudaDeviceProp {
    char name[256];
};

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
#define cudaEventDisableTiming 0x02

/* The error cudaGetLastError reports: set by an invalid launch configuration. */
static thread_local cudaError_t corrgen_emulation_error = cudaSuccess;

static inline cudaError_t cudaGetLastError(void)
{
    const cudaError_t error = corrgen_emulation_error;
    corrgen_emulation_error = cudaSuccess;
    return error;
}

static inline const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    }
    return "unrecognized error code";
}

static inline const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    }
    return "unrecognized error code";
}

static inline cudaError_t cudaMalloc(void **pointer, size_t bytes)
{
    *pointer = malloc(bytes > 0 ? bytes : 1);
    return *pointer != NULL ? cudaSuccess : cudaErrorMemoryAllocation;
}

static inline cudaError_t cudaMallocAsync(void **pointer, size_t bytes, cudaStream_t)
{
    return cudaMalloc(pointer, bytes);
}

static inline cudaError_t cudaFree(void *pointer)
{
    free(pointer);
    return cudaSuccess;
}

static inline cudaError_t cudaFreeAsync(void *pointer, cudaStream_t)
{
    return cudaFree(pointer);
}

static inline cudaError_t cudaMemcpy(void *to, const void *from, size_t bytes, cudaMemcpyKind)
{
    if (bytes > 0)
        memcpy(to, from, bytes);
    return cudaSuccess;
}

static inline cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

static inline cudaError_t cudaGetDevice(int *device)
{
    *device = 0;
    return cudaSuccess;
}

static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *properties, int device)
{
    if (device != 0)
        return cudaErrorInvalidDevice;
    strcpy(properties->name, "CPU emulation (cuda_emulation.h)");
    return cudaSuccess;
}

static inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attributes,
                                                   const void *pointer)
{
    attributes->type = cudaMemoryTypeDevice;
    attributes->device = 0;
    attributes->devicePointer = (void *)pointer;
    attributes->hostPointer = (void *)pointer;
    return cudaSuccess;
}

static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int)
{
    static char token;
    *event = (cudaEvent_t)&token;
    return cudaSuccess;
}

static inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int)
{
    return cudaSuccess;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

/* Run `body` once per thread of the grid, with blockIdx/threadIdx set; or, for a launch
 * configuration CUDA would refuse, set cudaErrorInvalidConfiguration and run nothing. */
template <class Body>
static void corrgen_emulate_launch(dim3 grid, dim3 block, Body body)
{
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64
        || grid.x == 0 || grid.x > 2147483647u || grid.y == 0 || grid.y > 65535
        || grid.z == 0 || grid.z > 65535) {
        corrgen_emulation_error = cudaErrorInvalidConfiguration;
        return;
    }
    gridDim = grid;
    blockDim = block;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                for (unsigned int tz = 0; tz < block.z; ++tz)
                    for (unsigned int ty = 0; ty < block.y; ++ty)
                        for (unsigned int tx = 0; tx < block.x; ++tx) {
                            threadIdx = uint3{tx, ty, tz};
                            body();
                        }
            }
}

#define CORRGEN_LAUNCH(kernel, grid, block, stream, ...) \
    corrgen_emulate_launch(dim3(grid), dim3(block), [&] { kernel(__VA_ARGS__); })

#endif
