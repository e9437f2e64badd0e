// CPU kernels for GAE and discounted returns (math in core/returns.h).
//
// Many columns, time-major [T, N] (column stride 1): columns are split into tiles, one tile per
// task; a task walks its tile backwards through time in lockstep, so each step streams one
// contiguous row segment per input and the loop over the tile vectorizes.
// Many columns, batch-first (time stride 1): each column is swept on its own, reading
// backwards through contiguous memory (lockstep across columns would gather, 10x slower).
// Narrow, long problems (fewer columns than threads): the chunked scan of core/returns.h, so
// every thread has work: aggregate chunks in parallel, scan the chunk maps, replay in parallel.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops/returns.h"

namespace fastrl::cpu {
namespace {

constexpr int64_t kMaxTile = 1024;   // columns per task, time-major layout (carry fits in L1)
constexpr int64_t kScanChunk = 256;  // time steps per chunk in the scan path
constexpr int64_t kScanMinT = 1024;  // shorter columns are cheaper to sweep directly
// Below this many elements per task a problem runs on the calling thread: the work (~0.5 ns per
// element) is then shorter than waking a thread (docs/ARCHITECTURE.md, "Threads on small
// machines").
constexpr int64_t kMinTaskElements = 1 << 17;

template <typename Problem>
void run_tiles(const Problem& p, int64_t T, int64_t N) {
  using scalar_t = typename Problem::scalar_t;
  const int64_t threads = at::get_num_threads();
  const int64_t tile = std::clamp<int64_t>((N + threads - 1) / threads, 1, kMaxTile);
  const int64_t grain = std::max<int64_t>(1, kMinTaskElements / (T * tile));
  at::parallel_for(0, (N + tile - 1) / tile, grain, [&](int64_t tile_begin, int64_t tile_end) {
    std::vector<scalar_t> carry(tile);
    for (int64_t i = tile_begin; i < tile_end; ++i) {
      const int64_t j0 = i * tile, width = std::min(tile, N - j0);
      for (int64_t k = 0; k < width; ++k) carry[k] = p.initial_carry(j0 + k);
      for (int64_t t = T - 1; t >= 0; --t) {
        // Columns are independent; the pragma also waives GCC's alias versioning, which it
        // gives up on with this many arrays. (Needs -fno-trapping-math to if-convert selects.)
#pragma omp simd
        for (int64_t k = 0; k < width; ++k) carry[k] = core::step(p, t, j0 + k, carry[k]);
      }
    }
  });
}

template <typename Problem>
void run_sweeps(const Problem& p, int64_t T, int64_t N) {
  at::parallel_for(0, N, std::max<int64_t>(1, kMinTaskElements / T), [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) core::sweep(p, j, 0, T, p.initial_carry(j));
  });
}

template <typename Problem>
void run_chunked_scan(const Problem& p, int64_t T, int64_t N) {
  using scalar_t = typename Problem::scalar_t;
  const int64_t chunks = (T + kScanChunk - 1) / kScanChunk;
  std::vector<core::Affine<scalar_t>> maps(N * chunks);
  std::vector<scalar_t> carry_in(N * chunks);
  auto range = [&](int64_t c) { return std::make_pair(c * kScanChunk, std::min(T, (c + 1) * kScanChunk)); };
  at::parallel_for(0, N * chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      auto [lo, hi] = range(i % chunks);
      maps[i] = core::aggregate(p, i / chunks, lo, hi);
    }
  });
  for (int64_t j = 0; j < N; ++j) {  // exclusive scan from the last chunk backwards
    scalar_t carry = p.initial_carry(j);
    for (int64_t c = chunks - 1; c >= 0; --c) {
      carry_in[j * chunks + c] = carry;
      carry = core::apply(maps[j * chunks + c], carry);
    }
  }
  at::parallel_for(0, N * chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      auto [lo, hi] = range(i % chunks);
      core::sweep(p, i / chunks, lo, hi, carry_in[i]);
    }
  });
}

template <typename Problem>
void run_problem(const Problem& p, int64_t T, int64_t N, bool time_major) {
  if (T == 0 || N == 0) return;
  if (N < at::get_num_threads() && T >= kScanMinT) {
    run_chunked_scan(p, T, N);
  } else if (time_major) {
    run_tiles(p, T, N);
  } else {
    run_sweeps(p, T, N);
  }
}

// The backend of the ops in ops/returns.h.
struct Cpu {
  template <typename Problem>
  static void run(const Problem& p, int64_t T, int64_t N, bool time_major) {
    run_problem(p, T, N, time_major);
  }
};

}  // namespace
}  // namespace fastrl::cpu

TORCH_LIBRARY_IMPL(fastrl, CPU, m) {
  fastrl::register_returns_ops<fastrl::cpu::Cpu>(m);
}
