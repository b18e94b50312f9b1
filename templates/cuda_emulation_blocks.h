/*
 * cuda_emulation_blocks.h: the kernel launches of cuda_emulation.h, with the block-shared
 * memory and barriers of the cooperative one. Part of corrgen, copied next to the source of
 * each emulated build and included by cuda_emulation.h (not on its own). Do not edit the
 * copies.
 *
 * CORRGEN_LAUNCH(kernel, grid, block, stream, args...) calls the kernel once per thread,
 * blocks in order, threads in order within a block: for kernels whose threads share nothing.
 *
 * CORRGEN_LAUNCH_COOPERATIVE(kernel, grid, block, stream, args...) runs one block at a time,
 * its threads as fibers (makecontext/swapcontext) on the calling host thread: in threadIdx
 * order, each until it reaches __syncthreads() or returns. When every thread of the block
 * waits at the same __syncthreads(), the block's barrier phase advances and they go on, in
 * the same order. The order is fixed, so runs are deterministic; a correct kernel's result
 * does not depend on it, and the checks below stop the kernels whose result could.
 *
 * CORRGEN_SHARED(type, name, count); in a kernel declares the block's shared array `name`
 * (nvcc: __shared__ type name[count]): an array per host thread, so host threads may run
 * launches at once, whose elements are reached through a proxy: reading one converts it to
 * `type`; =, +=, -=, *=, /=, ++ and -- write it. (Write `type x = name[i];`, not `auto`,
 * which would keep the proxy; an element has no address.) At the start of each block every
 * element is all-ones bits (NaN in floating point), as a GPU's shared memory holds whatever
 * was left there. Each element remembers its last writer and its readers in the current
 * barrier phase, and the launch stops at the first
 *   - read of an element another thread wrote in the same phase (read-after-write race),
 *   - write of an element another thread read or wrote in the same phase (write-after-read
 *     and write-after-write races),
 *   - read of an element no thread of the block has written (uninitialised): known at the
 *     end of the phase, as a thread that writes the element later in the phase makes the
 *     read a race instead (the reading thread goes on meanwhile with NaN, or zero for
 *     integer types),
 *   - index outside 0..count-1,
 *   - barrier some threads of the block never reach because they returned, or threads
 *     waiting at different __syncthreads() (the macro records each call site),
 *   - __syncthreads() or shared array under CORRGEN_LAUNCH (or outside any launch).
 * A race is reported as the threads run, in index order: a missing barrier between stores
 * and reads shows as a read-after-write race where a thread reads what a lower thread
 * stored, as a write-after-read race where a higher thread stores what a lower one read.
 * No more threads or blocks run; cudaGetLastError() returns cudaErrorLaunchFailure, whose
 * cudaGetErrorString, like corrgen_emulation_report(), names the kernel and its launch site,
 * the block and thread, the array, the index and the source lines. A stopped block's fibers
 * are abandoned, not unwound (kernels hold nothing that needs releasing).
 *
 * Out-of-bounds global memory is AddressSanitizer's to find: in a build with
 * -fsanitize=address the fiber switches are announced to it (__sanitizer_start_switch_fiber),
 * so cooperative launches run under it and it reports a kernel's heap overflow as anywhere.
 * (Its swapcontext interceptor prints a warning once: "ASan doesn't fully support
 * makecontext/swapcontext functions and may produce false positives in some cases!".)
 *
 * Costs: each host thread maps its fiber stacks once, CORRGEN_EMULATION_STACK_BYTES each
 * (64 KiB; 128 KiB under AddressSanitizer, whose reports run on them) with a guard page below
 * each, and reuses them for every block. A thread switch is one swapcontext, about 0.4 us,
 * some 0.25 us of it glibc's rt_sigprocmask system call; a thread that reaches a barrier
 * switches straight to the next thread, so a phase of n threads costs n + 1 switches: a
 * launch of 64 blocks of 256 threads with 4 barriers takes about 30 ms (the same grid under
 * CORRGEN_LAUNCH, a few microseconds plus the kernel's work).
 */
#ifndef CORRGEN_CUDA_EMULATION_BLOCKS_H
#define CORRGEN_CUDA_EMULATION_BLOCKS_H

#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <type_traits>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CORRGEN_EMULATION_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORRGEN_EMULATION_ASAN 1
#endif
#endif
#ifdef CORRGEN_EMULATION_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#ifndef CORRGEN_EMULATION_STACK_BYTES
#ifdef CORRGEN_EMULATION_ASAN
#define CORRGEN_EMULATION_STACK_BYTES (128 * 1024)
#else
#define CORRGEN_EMULATION_STACK_BYTES (64 * 1024)
#endif
#endif

/* ---- The launch in progress on this host thread ---- */

enum corrgen_launch_mode { CORRGEN_NOT_LAUNCHED, CORRGEN_SEQUENTIAL, CORRGEN_COOPERATIVE };

struct corrgen_launch_state {
    corrgen_launch_mode mode;
    const char *kernel; /* the kernel expression and the launch's source line */
    const char *file;
    int line;
    unsigned thread;          /* cooperative: the running thread's linear index in its block */
    unsigned phase;           /* cooperative: barriers the block has passed, plus one */
    unsigned long long block; /* blocks begun on this host thread: shared arrays reset on a
                                 new one */
    bool stopped;             /* a check failed: run no more threads */
};

static thread_local corrgen_launch_state corrgen_launch;

/* The first read, in the current barrier phase, of a shared element no thread had written.
 * Whether that is a race or an uninitialised read is known only at the end of the phase: a
 * later thread that writes the element in the same phase is racing with the read (threads
 * run in index order here, in any order on a GPU); if none does, the read was of an
 * uninitialised element. */
struct corrgen_unwritten_read {
    bool seen;
    const char *name;
    long long index;
    unsigned thread;
    const char *file;
    int line;
    unsigned phase;
};

static thread_local corrgen_unwritten_read corrgen_unwritten;

/* threadIdx of the thread with linear index `linear` in a block of blockDim. */
static inline uint3 corrgen_thread_of(unsigned linear)
{
    return uint3{linear % blockDim.x, linear / blockDim.x % blockDim.y,
                 linear / (blockDim.x * blockDim.y)};
}

static inline unsigned corrgen_linear_thread(void)
{
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

/* Stop the launch with cudaErrorLaunchFailure and a report about thread `thread` (linear) of
 * the current block: the first report of a launch is kept. */
__attribute__((format(printf, 2, 3)))
static inline void corrgen_stop(unsigned thread, const char *format, ...)
{
    if (corrgen_launch.stopped)
        return;
    corrgen_launch.stopped = true;
    corrgen_emulation_error = cudaErrorLaunchFailure;
    char *text = corrgen_emulation_report_text;
    const size_t size = sizeof corrgen_emulation_report_text;
    int used;
    if (corrgen_launch.mode == CORRGEN_NOT_LAUNCHED) {
        used = snprintf(text, size, "outside any kernel launch: ");
    } else {
        const uint3 t = corrgen_thread_of(thread);
        used = snprintf(text, size, "kernel %s (launched at %s:%d), block (%u,%u,%u), thread "
                        "(%u,%u,%u): ", corrgen_launch.kernel, corrgen_launch.file,
                        corrgen_launch.line, blockIdx.x, blockIdx.y, blockIdx.z, t.x, t.y, t.z);
    }
    if (used < 0 || (size_t)used >= size)
        return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(text + used, size - (size_t)used, format, arguments);
    va_end(arguments);
}

/* The launch configurations CUDA refuses: cudaErrorInvalidConfiguration, nothing runs.
 * Otherwise the launch begins. */
static inline bool corrgen_launch_begin(dim3 grid, dim3 block, corrgen_launch_mode mode,
                                        const char *kernel, const char *file, int line)
{
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64
        || grid.x == 0 || grid.x > 2147483647u || grid.y == 0 || grid.y > 65535
        || grid.z == 0 || grid.z > 65535) {
        corrgen_emulation_error = cudaErrorInvalidConfiguration;
        return false;
    }
    gridDim = grid;
    blockDim = block;
    corrgen_launch.mode = mode;
    corrgen_launch.kernel = kernel;
    corrgen_launch.file = file;
    corrgen_launch.line = line;
    corrgen_launch.stopped = false;
    return true;
}

/* ---- CORRGEN_LAUNCH: one thread after another ---- */

/* Run `body` once per thread of the grid, with blockIdx/threadIdx set, until a check stops
 * the launch. */
template <class Body>
static void corrgen_emulate_launch(dim3 grid, dim3 block, const char *kernel,
                                   const char *file, int line, Body body)
{
    if (!corrgen_launch_begin(grid, block, CORRGEN_SEQUENTIAL, kernel, file, line))
        return;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                ++corrgen_launch.block;
                for (unsigned int tz = 0; tz < block.z; ++tz)
                    for (unsigned int ty = 0; ty < block.y; ++ty)
                        for (unsigned int tx = 0; tx < block.x; ++tx) {
                            threadIdx = uint3{tx, ty, tz};
                            body();
                            if (corrgen_launch.stopped) {
                                corrgen_launch.mode = CORRGEN_NOT_LAUNCHED;
                                return;
                            }
                        }
            }
    corrgen_launch.mode = CORRGEN_NOT_LAUNCHED;
}

#define CORRGEN_LAUNCH(kernel, grid, block, stream, ...) \
    corrgen_emulate_launch(dim3(grid), dim3(block), #kernel, __FILE__, __LINE__, \
                           [&] { kernel(__VA_ARGS__); })

/* The report for a kernel that needs the cooperative launch but did not get it. */
static inline bool corrgen_refuse_sequential(const char *what, const char *file, int line)
{
    if (corrgen_launch.mode == CORRGEN_COOPERATIVE)
        return false;
    corrgen_stop(corrgen_linear_thread(), "%s at %s:%d %s", what, file, line,
                 corrgen_launch.mode == CORRGEN_SEQUENTIAL
                     ? "under CORRGEN_LAUNCH, which runs a block's threads one after another, "
                       "so none can wait for or see another: launch kernels that use "
                       "CORRGEN_SHARED or __syncthreads() with CORRGEN_LAUNCH_COOPERATIVE"
                     : "(shared memory and barriers exist only in a kernel launched with "
                       "CORRGEN_LAUNCH_COOPERATIVE)");
    return true;
}

/* ---- Fibers ---- */

/* A context to switch to: a fiber, or the host code that runs the block. */
struct corrgen_context {
    ucontext_t context;
    const void *stack; /* lowest address and size of its stack (host: learnt at first switch) */
    size_t size;
    void *fake_stack;  /* AddressSanitizer's fake stack while switched out */
};

enum corrgen_fiber_state { CORRGEN_RUNNABLE, CORRGEN_WAITING, CORRGEN_RETURNED };

struct corrgen_fiber {
    corrgen_context self;
    corrgen_fiber_state state;
    const char *file; /* the __syncthreads() it waits at */
    int line;
};

/* The fibers of one host thread: stacks mapped once (grown for a larger block), reused by
 * every block of every cooperative launch. */
class corrgen_fiber_pool {
public:
    corrgen_fiber *fibers = nullptr;
    unsigned capacity = 0;
    bool dirty = false; /* a stopped block left frames on the stacks (ASan's shadow) */

    corrgen_fiber_pool() = default;
    corrgen_fiber_pool(const corrgen_fiber_pool &) = delete;
    corrgen_fiber_pool &operator=(const corrgen_fiber_pool &) = delete;
    ~corrgen_fiber_pool() { release(); }

    bool reserve(unsigned threads)
    {
        if (threads <= capacity)
            return true;
        release();
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        const size_t stack = ((size_t)CORRGEN_EMULATION_STACK_BYTES + page - 1) / page * page;
        const size_t slot = stack + page;
        void *region = mmap(NULL, slot * threads, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        fibers = (corrgen_fiber *)calloc(threads, sizeof(corrgen_fiber));
        if (region == MAP_FAILED || fibers == NULL) {
            if (region != MAP_FAILED)
                munmap(region, slot * threads);
            free(fibers);
            fibers = nullptr;
            return false;
        }
        region_ = (char *)region;
        bytes_ = slot * threads;
        for (unsigned i = 0; i < threads; ++i) {
            /* The guard page below each stack turns an overflow into a fault, not another
             * thread's frames overwritten. */
            mprotect(region_ + i * slot, page, PROT_NONE);
            fibers[i].self.stack = region_ + i * slot + page;
            fibers[i].self.size = stack;
            getcontext(&fibers[i].self.context);
        }
        capacity = threads;
        return true;
    }

private:
    char *region_ = nullptr;
    size_t bytes_ = 0;

    void release()
    {
        if (region_ != nullptr)
            munmap(region_, bytes_);
        free(fibers);
        region_ = nullptr;
        fibers = nullptr;
        capacity = 0;
    }
};

static inline corrgen_fiber_pool &corrgen_fibers(void)
{
    static thread_local corrgen_fiber_pool pool;
    return pool;
}

/* The block a cooperative launch is running on this host thread. */
struct corrgen_block_run {
    corrgen_context host;
    corrgen_fiber *fibers;
    unsigned count;
    unsigned current;
    void (*invoke)(void *);
    void *body;
};

static thread_local corrgen_block_run *corrgen_running;

/* Make fiber `index` the running thread: its threadIdx and linear index. */
static inline void corrgen_become(corrgen_block_run *run, unsigned index)
{
    run->current = index;
    corrgen_launch.thread = index;
    threadIdx = corrgen_thread_of(index);
}

/* Switch from `from` to `to`; `from_ends`: `from` is never resumed. Returns when something
 * switches back to `from`. */
static inline void corrgen_switch(corrgen_context *from, corrgen_context *to, bool from_ends)
{
#ifdef CORRGEN_EMULATION_ASAN
    __sanitizer_start_switch_fiber(from_ends ? NULL : &from->fake_stack, to->stack, to->size);
#else
    (void)from_ends;
#endif
    swapcontext(&from->context, &to->context);
#ifdef CORRGEN_EMULATION_ASAN
    __sanitizer_finish_switch_fiber(from->fake_stack, NULL, NULL);
#endif
}

/* The running fiber waits or ends: run the next runnable thread of this phase, or, after the
 * last (or once the launch stopped), go back to the host code, which resolves the barrier. */
static inline void corrgen_yield(bool ends)
{
    corrgen_block_run *run = corrgen_running;
    const unsigned me = run->current;
    unsigned next = run->count;
    if (!corrgen_launch.stopped)
        for (next = me + 1; next < run->count; ++next)
            if (run->fibers[next].state == CORRGEN_RUNNABLE)
                break;
    corrgen_context *to = &run->host;
    if (next < run->count) {
        corrgen_become(run, next);
        to = &run->fibers[next].self;
    }
    corrgen_switch(&run->fibers[me].self, to, ends);
}

/* Leave the thread whose check just stopped the launch, for good. */
static inline void corrgen_abandon(void)
{
    if (corrgen_launch.mode != CORRGEN_COOPERATIVE)
        return;
    corrgen_fibers().dirty = true;
    corrgen_yield(true);
}

static inline void corrgen_fiber_main(void)
{
    corrgen_block_run *run = corrgen_running;
#ifdef CORRGEN_EMULATION_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(NULL, &bottom, &size);
    if (run->host.stack == NULL) { /* the block's first fiber is entered from the host */
        run->host.stack = bottom;
        run->host.size = size;
    }
#endif
    run->invoke(run->body);
    run->fibers[run->current].state = CORRGEN_RETURNED;
    corrgen_yield(true);
}

static inline void corrgen_syncthreads(const char *file, int line)
{
    if (corrgen_refuse_sequential("__syncthreads()", file, line))
        return;
    corrgen_block_run *run = corrgen_running;
    corrgen_fiber &me = run->fibers[run->current];
    me.state = CORRGEN_WAITING;
    me.file = file;
    me.line = line;
    corrgen_yield(false);
}

#define __syncthreads() corrgen_syncthreads(__FILE__, __LINE__)

/* After a phase: every thread waits or has returned. Release the waiting ones into the next
 * phase if no thread read an element nobody wrote, all of them wait at one __syncthreads()
 * and none returned; stop the launch otherwise. False: stopped. */
static inline bool corrgen_release(corrgen_block_run *run)
{
    if (corrgen_unwritten.seen) {
        const corrgen_unwritten_read &u = corrgen_unwritten;
        corrgen_stop(u.thread, "read of uninitialised shared %s[%lld] at %s:%d (barrier phase "
                     "%u): no thread of this block has written it", u.name, u.index, u.file,
                     u.line, u.phase);
        return false;
    }
    int waiting = -1, returned = -1, elsewhere = -1;
    unsigned waiters = 0;
    for (unsigned i = 0; i < run->count; ++i) {
        const corrgen_fiber &f = run->fibers[i];
        if (f.state == CORRGEN_RETURNED) {
            if (returned < 0)
                returned = (int)i;
            continue;
        }
        ++waiters;
        if (waiting < 0)
            waiting = (int)i;
        else if (elsewhere < 0 && (f.line != run->fibers[waiting].line
                                   || strcmp(f.file, run->fibers[waiting].file) != 0))
            elsewhere = (int)i;
    }
    if (waiting < 0)
        return true;
    const corrgen_fiber &w = run->fibers[waiting];
    if (returned >= 0) {
        const uint3 r = corrgen_thread_of((unsigned)returned);
        corrgen_stop((unsigned)waiting, "barrier divergence: waits at __syncthreads() at %s:%d "
                     "(barrier phase %u), but thread (%u,%u,%u) returned without reaching it "
                     "(%u of %u threads wait)", w.file, w.line, corrgen_launch.phase, r.x, r.y,
                     r.z, waiters, run->count);
        return false;
    }
    if (elsewhere >= 0) {
        const corrgen_fiber &e = run->fibers[elsewhere];
        const uint3 o = corrgen_thread_of((unsigned)elsewhere);
        corrgen_stop((unsigned)waiting, "barrier divergence: waits at __syncthreads() at %s:%d "
                     "(barrier phase %u), while thread (%u,%u,%u) waits at the one at %s:%d",
                     w.file, w.line, corrgen_launch.phase, o.x, o.y, o.z, e.file, e.line);
        return false;
    }
    ++corrgen_launch.phase;
    for (unsigned i = 0; i < run->count; ++i)
        if (run->fibers[i].state == CORRGEN_WAITING)
            run->fibers[i].state = CORRGEN_RUNNABLE;
    return true;
}

/* Run the block blockIdx: every thread from the start, phase after phase. False: stopped. */
static inline bool corrgen_run_block(corrgen_block_run *run, corrgen_fiber_pool &pool)
{
    ++corrgen_launch.block;
    corrgen_launch.phase = 1;
    corrgen_unwritten.seen = false;
    for (unsigned i = 0; i < run->count; ++i) {
        corrgen_fiber &f = run->fibers[i];
#ifdef CORRGEN_EMULATION_ASAN
        if (pool.dirty) /* an abandoned fiber's frames left their redzones poisoned */
            __asan_unpoison_memory_region(f.self.stack, f.self.size);
#endif
        f.state = CORRGEN_RUNNABLE;
        f.self.fake_stack = NULL;
        f.self.context.uc_stack.ss_sp = (void *)f.self.stack;
        f.self.context.uc_stack.ss_size = f.self.size;
        f.self.context.uc_link = NULL;
        makecontext(&f.self.context, corrgen_fiber_main, 0);
        /* swapcontext does not read uc_stack again, but AddressSanitizer's interceptor of it
         * would unpoison the whole stack named there at every switch, hiding overflows of
         * the kernel's local arrays (and costing a memset per switch). */
        f.self.context.uc_stack.ss_sp = NULL;
        f.self.context.uc_stack.ss_size = 0;
    }
    pool.dirty = false;
    for (;;) {
        unsigned first = 0;
        while (first < run->count && run->fibers[first].state != CORRGEN_RUNNABLE)
            ++first;
        if (first == run->count)
            return true;
        corrgen_become(run, first);
        corrgen_switch(&run->host, &run->fibers[first].self, false);
        if (corrgen_launch.stopped || !corrgen_release(run))
            return false;
    }
}

static inline void corrgen_run_blocks(dim3 grid, unsigned threads, void (*invoke)(void *),
                                      void *body)
{
    corrgen_fiber_pool &pool = corrgen_fibers();
    if (!pool.reserve(threads)) {
        corrgen_stop(0, "no memory for %u fiber stacks of %zu bytes", threads,
                     (size_t)CORRGEN_EMULATION_STACK_BYTES);
        return;
    }
    corrgen_block_run run;
    memset(&run, 0, sizeof run); /* the host's uc_stack stays empty: ASan leaves it alone */
    run.fibers = pool.fibers;
    run.count = threads;
    run.invoke = invoke;
    run.body = body;
    corrgen_running = &run;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                if (!corrgen_run_block(&run, pool)) {
                    corrgen_running = NULL;
                    return;
                }
            }
    corrgen_running = NULL;
}

template <class Body>
static void corrgen_invoke(void *body)
{
    (*(Body *)body)();
}

template <class Body>
static void corrgen_emulate_cooperative(dim3 grid, dim3 block, const char *kernel,
                                        const char *file, int line, Body body)
{
    if (!corrgen_launch_begin(grid, block, CORRGEN_COOPERATIVE, kernel, file, line))
        return;
    corrgen_run_blocks(grid, block.x * block.y * block.z, &corrgen_invoke<Body>, &body);
    corrgen_launch.mode = CORRGEN_NOT_LAUNCHED;
}

#define CORRGEN_LAUNCH_COOPERATIVE(kernel, grid, block, stream, ...) \
    corrgen_emulate_cooperative(dim3(grid), dim3(block), #kernel, __FILE__, __LINE__, \
                                [&] { kernel(__VA_ARGS__); })

/* ---- Shared arrays ---- */

/* An index into a shared array, with the source line of the access (GCC and Clang fill in
 * the caller's __builtin_FILE/__builtin_LINE). */
struct corrgen_shared_index {
    long long value;
    const char *file;
    int line;

    template <class I, typename std::enable_if<std::is_integral<I>::value
                                               || std::is_enum<I>::value, int>::type = 0>
    corrgen_shared_index(I index, const char *file_ = __builtin_FILE(),
                         int line_ = __builtin_LINE())
        : value((long long)index), file(file_), line(line_)
    {
    }
};

/* What one element saw in the block: all-ones bits (-1, and a phase never reached) when
 * nothing has. */
struct corrgen_shared_history {
    int writer; /* linear thread index, -1: never written in this block */
    int write_line;
    unsigned write_phase;
    int reader;       /* the first reader of read_phase */
    int other_reader; /* the first other one, -1: none */
    int read_line;
    unsigned read_phase;
};

/* The outcome of checking an access: refused (the launch stopped, or this is no cooperative
 * launch), allowed, or a read of an element no thread has written yet. */
enum corrgen_shared_access { CORRGEN_REFUSED, CORRGEN_ALLOWED, CORRGEN_UNWRITTEN };

/* The checks, independent of the element type. */
class corrgen_shared_base {
public:
    corrgen_shared_base(const corrgen_shared_base &) = delete;
    corrgen_shared_base &operator=(const corrgen_shared_base &) = delete;

protected:
    corrgen_shared_base(const char *name, const char *file, int line, long long count,
                        size_t element_bytes)
        : name_(name), file_(file), line_(line), count_(count),
          data_bytes_((size_t)count * element_bytes),
          data_((unsigned char *)malloc(data_bytes_)),
          history_((corrgen_shared_history *)malloc(sizeof(corrgen_shared_history)
                                                    * (size_t)count))
    {
    }

    ~corrgen_shared_base()
    {
        free(data_);
        free(history_);
    }

    /* May the running thread read (write) element at.value now? When not, the launch stops,
     * and in a cooperative launch this thread never comes back. */
    corrgen_shared_access check(const corrgen_shared_index &at, bool write)
    {
        if (corrgen_launch.mode != CORRGEN_COOPERATIVE) {
            if (!corrgen_launch.stopped) {
                char what[160];
                snprintf(what, sizeof what, "%s of shared %s[%lld] (declared at %s:%d)",
                         write ? "write" : "read", name_, at.value, file_, line_);
                corrgen_refuse_sequential(what, at.file, at.line);
            }
            return CORRGEN_REFUSED;
        }
        if (data_ == NULL || history_ == NULL) {
            corrgen_stop(corrgen_launch.thread, "no memory for shared %s", name_);
            return abandon();
        }
        if (block_ != corrgen_launch.block) { /* a new block: a GPU's leftovers, no history */
            memset(data_, 0xff, data_bytes_);
            memset(history_, 0xff, sizeof(corrgen_shared_history) * (size_t)count_);
            block_ = corrgen_launch.block;
        }
        if (at.value < 0 || at.value >= count_) {
            corrgen_stop(corrgen_launch.thread, "shared %s[%lld] %s at %s:%d: index outside "
                         "0..%lld (%s declared at %s:%d)", name_, at.value,
                         write ? "written" : "read", at.file, at.line, count_ - 1, name_, file_,
                         line_);
            return abandon();
        }
        return write ? check_write(at) : check_read(at);
    }

    unsigned char *data() const { return data_; }

private:
    const char *name_, *file_;
    int line_;
    long long count_;
    size_t data_bytes_;
    unsigned char *data_;
    corrgen_shared_history *history_;
    unsigned long long block_ = 0;

    static corrgen_shared_access abandon()
    {
        corrgen_abandon();
        return CORRGEN_REFUSED;
    }

    corrgen_shared_access check_read(const corrgen_shared_index &at)
    {
        corrgen_shared_history &h = history_[at.value];
        const int me = (int)corrgen_launch.thread;
        const unsigned phase = corrgen_launch.phase;
        if (h.writer >= 0 && h.write_phase == phase && h.writer != me) {
            const uint3 w = corrgen_thread_of((unsigned)h.writer);
            corrgen_stop(me, "read-after-write race on shared %s[%lld]: read at %s:%d, written "
                         "by thread (%u,%u,%u) at line %d in the same barrier phase %u (no "
                         "__syncthreads() between the write and the read)", name_, at.value,
                         at.file, at.line, w.x, w.y, w.z, h.write_line, phase);
            return abandon();
        }
        if (h.read_phase != phase) {
            h.read_phase = phase;
            h.reader = me;
            h.other_reader = -1;
            h.read_line = at.line;
        } else if (h.reader != me && h.other_reader < 0) {
            h.other_reader = me;
        }
        if (h.writer >= 0)
            return CORRGEN_ALLOWED;
        if (!corrgen_unwritten.seen)
            corrgen_unwritten = corrgen_unwritten_read{true, name_, at.value, (unsigned)me,
                                                       at.file, at.line, phase};
        return CORRGEN_UNWRITTEN;
    }

    corrgen_shared_access check_write(const corrgen_shared_index &at)
    {
        corrgen_shared_history &h = history_[at.value];
        const int me = (int)corrgen_launch.thread;
        const unsigned phase = corrgen_launch.phase;
        if (h.writer >= 0 && h.write_phase == phase && h.writer != me) {
            const uint3 w = corrgen_thread_of((unsigned)h.writer);
            corrgen_stop(me, "write-after-write race on shared %s[%lld]: written at %s:%d, and "
                         "by thread (%u,%u,%u) at line %d in the same barrier phase %u (no "
                         "__syncthreads() between the writes)", name_, at.value, at.file,
                         at.line, w.x, w.y, w.z, h.write_line, phase);
            return abandon();
        }
        if (h.read_phase == phase && (h.reader != me || h.other_reader >= 0)) {
            const bool first = h.reader != me;
            const uint3 r = corrgen_thread_of((unsigned)(first ? h.reader : h.other_reader));
            char where[32] = "";
            if (first)
                snprintf(where, sizeof where, " at line %d", h.read_line);
            corrgen_stop(me, "write-after-read race on shared %s[%lld]: written at %s:%d, read "
                         "by thread (%u,%u,%u)%s%s in the same barrier phase %u (no "
                         "__syncthreads() between the read and the write)", name_, at.value,
                         at.file, at.line, r.x, r.y, r.z, where,
                         h.writer < 0 ? ", before any thread wrote it," : "", phase);
            return abandon();
        }
        h.writer = me;
        h.write_phase = phase;
        h.write_line = at.line;
        return CORRGEN_ALLOWED;
    }
};

template <class T>
class corrgen_shared_typed : public corrgen_shared_base {
    static_assert(std::is_trivially_copyable<T>::value,
                  "CORRGEN_SHARED: the element type must be trivially copyable");

public:
    corrgen_shared_typed(const char *name, const char *file, int line, long long count)
        : corrgen_shared_base(name, file, line, count, sizeof(T))
    {
    }

    /* The element; when there is none to read (the launch stopped, or its verdict waits for
     * the end of the phase), NaN in floating point, and zero otherwise: harmless as an index
     * until the report comes. */
    T read(const corrgen_shared_index &at)
    {
        T value;
        if (check(at, false) == CORRGEN_ALLOWED)
            memcpy(&value, data() + sizeof(T) * (size_t)at.value, sizeof(T));
        else if (std::is_floating_point<T>::value)
            memset(&value, 0xff, sizeof(T));
        else
            memset(&value, 0, sizeof(T));
        return value;
    }

    void write(const corrgen_shared_index &at, T value)
    {
        if (check(at, true) == CORRGEN_ALLOWED)
            memcpy(data() + sizeof(T) * (size_t)at.value, &value, sizeof(T));
    }
};

/* One element of a shared array, as an expression: reading converts, assigning writes. */
template <class T>
class corrgen_shared_ref {
public:
    corrgen_shared_ref(corrgen_shared_typed<T> *array, const corrgen_shared_index &at)
        : array_(array), at_(at)
    {
    }
    corrgen_shared_ref(const corrgen_shared_ref &) = default;

    operator T() const { return array_->read(at_); }

    /* By value: the right-hand side is read at the kernel's line, not in here. */
    corrgen_shared_ref &operator=(T value)
    {
        array_->write(at_, value);
        return *this;
    }
    corrgen_shared_ref &operator=(const corrgen_shared_ref &other) { return *this = T(other); }
    corrgen_shared_ref &operator+=(T value) { return *this = T(T(*this) + value); }
    corrgen_shared_ref &operator-=(T value) { return *this = T(T(*this) - value); }
    corrgen_shared_ref &operator*=(T value) { return *this = T(T(*this) * value); }
    corrgen_shared_ref &operator/=(T value) { return *this = T(T(*this) / value); }
    corrgen_shared_ref &operator++() { return *this = T(T(*this) + T(1)); }
    corrgen_shared_ref &operator--() { return *this = T(T(*this) - T(1)); }

private:
    corrgen_shared_typed<T> *array_;
    corrgen_shared_index at_;
};

template <class T, long long Count>
class corrgen_shared_array : public corrgen_shared_typed<T> {
    static_assert(Count > 0, "CORRGEN_SHARED: the count must be positive");
    static_assert(sizeof(T) * Count <= 48 * 1024,
                  "CORRGEN_SHARED: over the 48 KiB of static shared memory a block may have");

public:
    corrgen_shared_array(const char *name, const char *file, int line)
        : corrgen_shared_typed<T>(name, file, line, Count)
    {
    }

    corrgen_shared_ref<T> operator[](const corrgen_shared_index &at)
    {
        return corrgen_shared_ref<T>(this, at);
    }
};

/* The storage lives per host thread; `name` is a reference to it in the kernel's frame. */
#define CORRGEN_SHARED(type, name, count) \
    static thread_local corrgen_shared_array<type, (count)> name##_corrgen_storage( \
        #name, __FILE__, __LINE__); \
    corrgen_shared_array<type, (count)> &name = name##_corrgen_storage

#endif
