/* The emulated runs of kernels.cu: main(case, folder) reads the inputs from folder/<name>.bin
 * (written by NumPy), launches, writes the outputs to folder/<name>.out, and prints each
 * launch's error and report. */
#include <stdio.h>
#include <string>
#include <thread>
#include <vector>

#include "kernels.cu"

static std::string folder;

template <class T>
static std::vector<T> load(const char *name)
{
    FILE *file = fopen((folder + "/" + name + ".bin").c_str(), "rb");
    std::vector<T> values;
    T value;
    while (file != NULL && fread(&value, sizeof value, 1, file) == 1)
        values.push_back(value);
    if (file != NULL)
        fclose(file);
    return values;
}

template <class T>
static void save(const char *name, const std::vector<T> &values)
{
    FILE *file = fopen((folder + "/" + name + ".out").c_str(), "wb");
    fwrite(values.data(), sizeof(T), values.size(), file);
    fclose(file);
}

static void status(const char *launch)
{
    const cudaError_t error = cudaGetLastError();
    printf("launch %s: %s\n", launch, cudaGetErrorName(error));
    if (error != cudaSuccess)
        printf("report %s: %s\n", launch, cudaGetErrorString(error));
}

static void run_matmul(const char *out, int mistake)
{
    const std::vector<double> a = load<double>("a"), b = load<double>("b");
    const std::vector<int> shape = load<int>("shape");
    std::vector<double> c((size_t)shape[0] * shape[2], -1.0);
    launch_matmul(a.data(), b.data(), c.data(), shape[0], shape[1], shape[2], mistake);
    save(out, c);
}

static void correct(void)
{
    printf("before any failure: %s|%s\n", cudaGetErrorString(cudaErrorLaunchFailure),
           corrgen_emulation_report());
    run_matmul("matmul", 0);
    status("matmul");
    const std::vector<double> x = load<double>("x");
    std::vector<double> sums(5);
    CORRGEN_LAUNCH_COOPERATIVE(block_sum, 5, LANES, 0, x.data(), sums.data(), (int)x.size());
    status("block_sum");
    save("block_sum", sums);
    const std::vector<float> m = load<float>("m");
    std::vector<float> mt(m.size());
    CORRGEN_LAUNCH_COOPERATIVE(transpose, dim3((30 + TILE - 1) / TILE, (21 + TILE - 1) / TILE),
                               dim3(TILE, TILE), 0, m.data(), mt.data(), 21, 30);
    status("transpose");
    save("transpose", mt);
    const std::vector<double> s = load<double>("s");
    std::vector<double> scanned(s.size()), suffixes(2 * LANES), reversed(s.size());
    std::vector<int> ran(s.size());
    CORRGEN_LAUNCH_COOPERATIVE(scan, 3, LANES, 0, s.data(), scanned.data(), 3 * LANES, 0);
    status("scan");
    save("scan", scanned);
    CORRGEN_LAUNCH_COOPERATIVE(suffix_sums, 2, LANES, 0, x.data(), suffixes.data(), 3, 0);
    status("suffix_sums");
    save("suffix_sums", suffixes);
    CORRGEN_LAUNCH_COOPERATIVE(reverse, 3, LANES, 0, s.data(), reversed.data(), ran.data(), 0);
    status("reverse");
    save("reverse", reversed);
    std::vector<double> formed(LANES);
    CORRGEN_LAUNCH_COOPERATIVE(forms, 1, LANES, 0, s.data(), formed.data());
    status("forms");
    save("forms", formed);
}

static void broken(const std::string &which)
{
    const std::vector<double> x = load<double>("x");
    std::vector<double> out(x.size(), -1.0);
    std::vector<int> ran(x.size());
    if (which == "scan_store_barrier")
        CORRGEN_LAUNCH_COOPERATIVE(scan, 3, LANES, 0, x.data(), out.data(), 3 * LANES, 1);
    else if (which == "matmul_load_barrier")
        run_matmul("matmul", 1);
    else if (which == "matmul_trailing_barrier")
        run_matmul("matmul", 2);
    else if (which == "suffix_trailing_barrier")
        CORRGEN_LAUNCH_COOPERATIVE(suffix_sums, 2, LANES, 0, x.data(), out.data(), 3, 1);
    else if (which == "pairs")
        CORRGEN_LAUNCH_COOPERATIVE(pairs, 1, LANES, 0, x.data(), out.data());
    else if (which == "tree_of_fewer_threads")
        CORRGEN_LAUNCH_COOPERATIVE(block_sum, 2, 24, 0, x.data(), out.data(), 48);
    else if (which == "early_return")
        CORRGEN_LAUNCH_COOPERATIVE(scan, 2, LANES, 0, x.data(), out.data(), 40, 2);
    else if (which == "split_barrier")
        CORRGEN_LAUNCH_COOPERATIVE(split_barrier, 1, LANES, 0, out.data());
    else if (which == "one_past_the_end")
        CORRGEN_LAUNCH_COOPERATIVE(reverse, 3, LANES, 0, x.data(), out.data(), ran.data(), 1);
    else if (which == "sequential_shared")
        CORRGEN_LAUNCH(scan, 3, LANES, 0, x.data(), out.data(), 3 * LANES, 0);
    else if (which == "sequential_barrier")
        CORRGEN_LAUNCH(barrier_only, 2, LANES, 0, out.data());
    status(which.c_str());
    save("out", out);
    save("ran", ran);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    folder = argv[2];
    const std::string which = argv[1];
    if (which == "correct") {
        correct();
    } else if (which == "host_threads") {
        /* Two host threads run cooperative launches at once, each with its own blocks. */
        std::thread first(run_matmul, "first", 0), second(run_matmul, "second", 0);
        first.join();
        second.join();
        status("host_threads");
    } else if (which == "configuration") {
        const std::vector<double> x = load<double>("x");
        std::vector<double> out(x.size());
        std::vector<int> ran(x.size());
        CORRGEN_LAUNCH_COOPERATIVE(reverse, 1, 2048, 0, x.data(), out.data(), ran.data(), 0);
        status("2048 threads");
        CORRGEN_LAUNCH_COOPERATIVE(reverse, 0, LANES, 0, x.data(), out.data(), ran.data(), 0);
        status("no blocks");
        save("ran", ran);
    } else if (which == "recover") {
        broken("pairs");
        run_matmul("matmul", 0);
        status("matmul");
    } else if (which == "overflow") {
        const int n = 2 * LANES;
        double *in = (double *)malloc(sizeof(double) * n), *out = (double *)malloc(sizeof(double) * n);
        for (int i = 0; i < n; ++i)
            in[i] = i;
        CORRGEN_LAUNCH_COOPERATIVE(shifted, 2, LANES, 0, in, out, n);
        status("shifted");
        free(in);
        free(out);
    } else if (which == "local_overflow") {
        std::vector<double> out(LANES);
        CORRGEN_LAUNCH_COOPERATIVE(local_past_the_end, 1, LANES, 0, out.data(), 4);
        status("local_past_the_end");
    } else {
        broken(which);
    }
    return 0;
}
