/* Block-cooperative kernels: valid CUDA (nvcc) and emulated (cuda_emulation.h). `mistake`
 * removes one barrier, or makes one bad access, for the checks to find. */
#include <math.h>

#define TILE 8
#define LANES 32

/* c = a b (row-major, a m x k, b k x n): each block a TILE x TILE tile of c. */
__global__ void matmul(const double *a, const double *b, double *c, int m, int k, int n,
                       int mistake)
{
    CORRGEN_SHARED(double, as, TILE * TILE);
    CORRGEN_SHARED(double, bs, TILE * TILE);
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    double acc = 0.0;
    for (int t = 0; t < k; t += TILE) {
        as[ty * TILE + tx] = row < m && t + tx < k ? a[row * k + t + tx] : 0.0;
        bs[ty * TILE + tx] = t + ty < k && col < n ? b[(t + ty) * n + col] : 0.0;
        if (mistake != 1)
            __syncthreads();
        for (int j = 0; j < TILE; ++j)
            acc = fma(as[ty * TILE + j], bs[j * TILE + tx], acc);
        if (mistake != 2)
            __syncthreads();
    }
    if (row < m && col < n)
        c[row * n + col] = acc;
}

/* out[b] = the sum of in[i] over the i with (i / LANES) % gridDim.x == b: a tree in shared
 * memory, which assumes LANES threads (launched with fewer, it reads slots nobody wrote). */
__global__ void block_sum(const double *in, double *out, int n)
{
    CORRGEN_SHARED(double, part, LANES);
    const unsigned t = threadIdx.x;
    double acc = 0.0;
    for (int i = blockIdx.x * LANES + t; i < n; i += LANES * gridDim.x)
        acc += in[i];
    part[t] = acc;
    __syncthreads();
    for (unsigned s = LANES / 2; s > 0; s >>= 1) {
        if (t < s)
            part[t] += part[t + s];
        __syncthreads();
    }
    if (t == 0)
        out[blockIdx.x] = part[0];
}

/* out (cols x rows) = in (rows x cols) transposed, through a padded TILE x TILE tile. */
__global__ void transpose(const float *in, float *out, int rows, int cols)
{
    CORRGEN_SHARED(float, tile, TILE * (TILE + 1));
    int x = blockIdx.x * TILE + threadIdx.x, y = blockIdx.y * TILE + threadIdx.y;
    if (x < cols && y < rows)
        tile[threadIdx.y * (TILE + 1) + threadIdx.x] = in[y * cols + x];
    __syncthreads();
    x = blockIdx.y * TILE + threadIdx.x;
    y = blockIdx.x * TILE + threadIdx.y;
    if (x < rows && y < cols) {
        const float v = tile[threadIdx.x * (TILE + 1) + threadIdx.y];
        out[y * rows + x] = v;
    }
}

/* The expressions a shared element takes part in, on LANES values x (u = t + 1 mod LANES):
 * out[t] = x_u (2 + x_u) x_u + x_t (2 + x_u) x_u + (x_t if x_t > x_u else 0) + x_u + LANES. */
__global__ void forms(const double *in, double *out)
{
    CORRGEN_SHARED(double, a, LANES);
    CORRGEN_SHARED(double, b, LANES);
    CORRGEN_SHARED(double, c, LANES);
    CORRGEN_SHARED(int, count, 1);
    const unsigned t = threadIdx.x, u = (t + 1) % LANES;
    a[t] = in[t];
    b[t] = 2;
    if (t == 0)
        count[0] = 0;
    __syncthreads();
    b[t] += a[t];
    b[t] *= a[t];
    c[t] = a[u];
    if (t == 0)
        for (int j = 0; j < LANES; ++j)
            ++count[0];
    __syncthreads();
    double acc = a[u] * b[u];
    acc = fma(a[t], b[u], acc);
    const double x = a[t];
    acc += x > a[u] ? a[t] : 0.0;
    out[t] = acc + c[t] + count[0];
}

/* Inclusive prefix sums of each block's LANES elements (n a multiple of LANES). `mistake`
 * 1: no barrier between the store and the reads; 2: threads past n return first. */
__global__ void scan(const double *in, double *out, int n, int mistake)
{
    CORRGEN_SHARED(double, tile, LANES);
    const int i = blockIdx.x * LANES + threadIdx.x;
    if (mistake == 2 && i >= n)
        return;
    tile[threadIdx.x] = i < n ? in[i] : 0.0;
    if (mistake != 1)
        __syncthreads();
    double acc = 0.0;
    for (unsigned j = 0; j <= threadIdx.x; ++j)
        acc += tile[j];
    if (i < n)
        out[i] = acc;
}

/* out[b * LANES + t] = the sum over the chunks of LANES elements of block b's `chunks`
 * chunks of the chunk's elements t.. LANES - 1. `mistake` 1: no barrier after the reads, so
 * the next chunk's store overwrites what other threads still read. */
__global__ void suffix_sums(const double *in, double *out, int chunks, int mistake)
{
    CORRGEN_SHARED(double, tile, LANES);
    const unsigned t = threadIdx.x;
    double acc = 0.0;
    for (int c = 0; c < chunks; ++c) {
        tile[t] = in[(blockIdx.x * chunks + c) * LANES + t];
        __syncthreads();
        for (unsigned j = t; j < LANES; ++j)
            acc += tile[j];
        if (mistake != 1)
            __syncthreads();
    }
    out[blockIdx.x * LANES + t] = acc;
}

/* Two threads store into each slot. */
__global__ void pairs(const double *in, double *out)
{
    CORRGEN_SHARED(double, tile, LANES);
    tile[threadIdx.x / 2] = in[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x / 2];
}

/* Half the block waits at one barrier, half at another. */
__global__ void split_barrier(double *out)
{
    CORRGEN_SHARED(double, tile, LANES);
    if (threadIdx.x < LANES / 2) {
        tile[threadIdx.x] = 1.0;
        __syncthreads();
    } else {
        tile[threadIdx.x] = 2.0;
        __syncthreads();
    }
    out[threadIdx.x] = tile[LANES - 1 - threadIdx.x];
}

/* out = each block's elements reversed; `mistake` 1: the mirror index is one too high.
 * ran[i] counts the threads that finished. */
__global__ void reverse(const double *in, double *out, int *ran, int mistake)
{
    CORRGEN_SHARED(double, tile, LANES);
    const int i = blockIdx.x * LANES + threadIdx.x;
    tile[threadIdx.x] = in[i];
    __syncthreads();
    out[i] = tile[LANES - (mistake == 1 ? 0 : 1) - threadIdx.x];
    ran[i] += 1;
}

/* A barrier and nothing shared. */
__global__ void barrier_only(double *out)
{
    out[threadIdx.x] = 1.0;
    __syncthreads();
}

/* in[i + 1] for the last thread is one past the array. */
__global__ void shifted(const double *in, double *out, int n)
{
    CORRGEN_SHARED(double, tile, LANES);
    const int i = blockIdx.x * LANES + threadIdx.x;
    tile[threadIdx.x] = i + 1 <= n ? in[i + 1] : 0.0;
    __syncthreads();
    if (i < n)
        out[i] = tile[threadIdx.x];
}

/* local[n] is one past the thread's own array, read after a barrier. */
__global__ void local_past_the_end(double *out, int n)
{
    CORRGEN_SHARED(double, tile, LANES);
    volatile double local[4];
    for (int j = 0; j < 4; ++j)
        local[j] = j;
    tile[threadIdx.x] = 1.0;
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x] + local[n];
}

void launch_matmul(const double *a, const double *b, double *c, int m, int k, int n,
                   int mistake)
{
    const dim3 grid((n + TILE - 1) / TILE, (m + TILE - 1) / TILE), block(TILE, TILE);
    CORRGEN_LAUNCH_COOPERATIVE(matmul, grid, block, 0, a, b, c, m, k, n, mistake);
}
