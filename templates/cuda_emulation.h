/*
 * cuda_emulation.h: runs corrgen's CUDA kernel source on the CPU; part of corrgen, copied
 * next to the source of each emulated build (with cuda_emulation_blocks.h, which it
 * includes). Do not edit the copies.
 *
 * Force-included (g++ -x c++ -include cuda_emulation.h) ahead of the exact .cu source that
 * nvcc compiles, it stands in for <cuda_runtime.h>:
 *
 *  - __global__, __device__, __host__ and __forceinline__ become plain C++;
 *  - blockIdx, threadIdx, blockDim and gridDim are thread-local globals;
 *  - device memory is host memory: cudaMalloc is malloc, cudaMemcpy is memcpy, streams and
 *    events are accepted and ignored (everything runs to completion at once), and there is
 *    one device;
 *  - the launches, shared memory and barriers are in cuda_emulation_blocks.h:
 *    CORRGEN_LAUNCH(kernel, grid, block, stream, args...) calls the kernel once per thread,
 *    blocks in order, threads in order within a block, on the calling host thread: fast, and
 *    faithful for kernels whose threads do not communicate. corrgen's element-wise kernels
 *    are written that way (see the comment at the top of conv2d_cuda.cu).
 *    CORRGEN_LAUNCH_COOPERATIVE(...) runs the threads of each block as fibers that wait for
 *    each other at __syncthreads(), for kernels that share CORRGEN_SHARED arrays; it stops
 *    at the first race, uninitialised read, out-of-range index or divergent barrier, and
 *    the launch fails with cudaErrorLaunchFailure, whose cudaGetErrorString (and
 *    corrgen_emulation_report()) says what happened where. A __syncthreads() or a shared
 *    array under CORRGEN_LAUNCH fails the same way instead of computing something wrong.
 *    Both check the launch configuration against CUDA's limits (an invalid one sets
 *    cudaErrorInvalidConfiguration for cudaGetLastError, as a real launch does).
 *
 * Warp functions (__shfl*), atomics and __shared__ itself are not defined: using them is a
 * compile error rather than a silently different result.
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
    cudaErrorLaunchFailure = 719,
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

/* The error cudaGetLastError reports: set by an invalid launch configuration, or by a launch
 * that cuda_emulation_blocks.h stopped (cudaErrorLaunchFailure). Unlike a GPU's launch
 * failure, it is not sticky beyond cudaGetLastError: the process's later launches run. */
static thread_local cudaError_t corrgen_emulation_error = cudaSuccess;

/* What the last stopped launch of this host thread found, and where (empty: none yet). */
static thread_local char corrgen_emulation_report_text[1024];

static inline const char *corrgen_emulation_report(void)
{
    return corrgen_emulation_report_text;
}

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
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
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
    case cudaErrorLaunchFailure:
        return corrgen_emulation_report_text[0] != '\0' ? corrgen_emulation_report_text
                                                         : "unspecified launch failure";
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

#include "cuda_emulation_blocks.h"

#endif
