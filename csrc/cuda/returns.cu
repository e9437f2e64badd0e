// CUDA kernels for GAE and discounted returns (math in core/returns.h).
//
// Many columns: one thread per column sweeps backwards through time; in time-major layout a
// warp reads 32 neighbouring columns of one step, so loads coalesce.
// Few, long columns (e.g. 8 sequences x 8192 tokens): one block per column, each thread owns a
// chunk of time steps. Threads fold their chunk into one affine map, the block scans those maps
// in shared memory (Hillis-Steele, from the last chunk backwards), and each thread replays its
// chunk from the carry entering it. Tuning notes live in bench/README.md.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "ops/returns.h"

namespace fastrl::cuda {
namespace {

constexpr int kColumnThreads = 128;
constexpr int kScanThreads = 256;
constexpr int64_t kScanMinT = 512;       // shorter columns: a plain sweep is as fast
constexpr int64_t kScanMaxColumns = 2048;  // more columns already fill the GPU with sweeps

template <typename Problem>
__global__ void sweep_columns_kernel(Problem p, int64_t T, int64_t N) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < N) core::sweep(p, j, 0, T, p.initial_carry(j));
}

template <typename Problem>
__global__ void chunked_scan_kernel(Problem p, int64_t T) {
  using scalar_t = typename Problem::scalar_t;
  __shared__ scalar_t cs[kScanThreads];
  __shared__ scalar_t ds[kScanThreads];
  __shared__ bool resets[kScanThreads];
  const int64_t j = blockIdx.x;
  const int k = threadIdx.x;
  const int64_t chunk = (T + kScanThreads - 1) / kScanThreads;
  const int64_t lo = min(T, k * chunk), hi = min(T, lo + chunk);

  core::Affine<scalar_t> f = core::aggregate(p, j, lo, hi);
  // Inclusive suffix scan: after it, thread k holds the map of chunks k..last.
  auto share = [&](const core::Affine<scalar_t>& g) {
    cs[k] = g.c;
    ds[k] = g.d;
    resets[k] = g.reset;
  };
  auto shared_map = [&](int i) { return core::Affine<scalar_t>{cs[i], ds[i], resets[i]}; };
  for (int offset = 1; offset < kScanThreads; offset <<= 1) {
    share(f);
    __syncthreads();
    if (k + offset < kScanThreads) f = core::compose(f, shared_map(k + offset));
    __syncthreads();
  }
  share(f);
  __syncthreads();
  const scalar_t init = p.initial_carry(j);
  const scalar_t carry = (k + 1 < kScanThreads) ? core::apply(shared_map(k + 1), init) : init;
  core::sweep(p, j, lo, hi, carry);
}

template <typename Problem>
void launch(const Problem& p, int64_t T, int64_t N) {
  if (T == 0 || N == 0) return;
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (N <= kScanMaxColumns && T >= kScanMinT) {
    chunked_scan_kernel<<<static_cast<unsigned>(N), kScanThreads, 0, stream>>>(p, T);
  } else {
    const auto blocks = static_cast<unsigned>((N + kColumnThreads - 1) / kColumnThreads);
    sweep_columns_kernel<<<blocks, kColumnThreads, 0, stream>>>(p, T, N);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The backend of the ops in ops/returns.h (the layout does not change the choice of kernel).
struct Cuda {
  template <typename Problem>
  static void run(const Problem& p, int64_t T, int64_t N, bool /*time_major*/) {
    launch(p, T, N);
  }
};

}  // namespace
}  // namespace fastrl::cuda

TORCH_LIBRARY_IMPL(fastrl, CUDA, m) {
  fastrl::register_returns_ops<fastrl::cuda::Cuda>(m);
}
