// CPU kernels for GAE and discounted returns (math in core/returns.h).
//
// Wide problems: columns are split across threads; each thread walks a tile of kTile columns
// backwards through time in lockstep, so every step touches a few whole cache lines in either
// layout (time-major: the tile is contiguous; batch-first: each column's line serves 8-16 steps).
// Narrow, long problems (fewer columns than threads): the chunked scan of core/returns.h, so
// every thread has work: aggregate chunks in parallel, scan the chunk maps, replay in parallel.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "ops/returns.h"

namespace fastrl::cpu {
namespace {

constexpr int64_t kTile = 16;        // columns stepped in lockstep by one thread
constexpr int64_t kScanChunk = 256;  // time steps per chunk in the scan path
constexpr int64_t kScanMinT = 1024;  // shorter columns are cheaper to sweep directly

template <typename Problem>
void run_columns(const Problem& p, int64_t T, int64_t N) {
  using scalar_t = typename Problem::scalar_t;
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(T, 1) / kTile);
  at::parallel_for(0, (N + kTile - 1) / kTile, grain, [&](int64_t tile_begin, int64_t tile_end) {
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t j0 = tile * kTile, width = std::min(kTile, N - j0);
      scalar_t carry[kTile];
      for (int64_t k = 0; k < width; ++k) carry[k] = p.initial_carry(j0 + k);
      for (int64_t t = T - 1; t >= 0; --t) {
        for (int64_t k = 0; k < width; ++k) carry[k] = core::step(p, t, j0 + k, carry[k]);
      }
    }
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
      const auto& f = maps[j * chunks + c];
      carry = f.d + f.c * carry;
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
void run(const Problem& p, int64_t T, int64_t N) {
  if (T == 0 || N == 0) return;
  if (N < at::get_num_threads() && T >= kScanMinT) {
    run_chunked_scan(p, T, N);
  } else {
    run_columns(p, T, N);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gae(const at::Tensor& rewards, const at::Tensor& values,
                                       const at::Tensor& next_values, const at::Tensor& terminated,
                                       const at::Tensor& done, const std::optional<at::Tensor>& mask,
                                       double gamma, double lam) {
  auto [advantages, returns] =
      check_gae(rewards, values, next_values, terminated, done, mask, gamma, lam);
  AT_DISPATCH_FLOATING_TYPES(rewards.scalar_type(), "fastrl::gae", [&] {
    auto p = make_gae_problem<scalar_t>(rewards, values, next_values, terminated, done, mask,
                                        gamma, lam, advantages, returns);
    run(p, rewards.size(0), rewards.size(1));
  });
  return {advantages, returns};
}

at::Tensor discounted_returns(const at::Tensor& rewards, const at::Tensor& done,
                              const at::Tensor& bootstrap, const std::optional<at::Tensor>& mask,
                              double gamma) {
  at::Tensor returns = check_discounted_returns(rewards, done, bootstrap, mask, gamma);
  const at::Tensor boot = bootstrap.contiguous();
  AT_DISPATCH_FLOATING_TYPES(rewards.scalar_type(), "fastrl::discounted_returns", [&] {
    auto p = make_discounted_returns_problem<scalar_t>(rewards, done, boot, mask, gamma, returns);
    run(p, rewards.size(0), rewards.size(1));
  });
  return returns;
}

}  // namespace fastrl::cpu
