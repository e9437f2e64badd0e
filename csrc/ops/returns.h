// The returns ops, written once for the CPU and CUDA kernels (templates over the backend that
// cpu/returns.cpp and cuda/returns.cu register): argument checks (for callers of
// torch.ops.fastrl.* that skip the Python wrapper), output allocation, and the translation of
// tensors into the torch-free problems of core/returns.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <optional>
#include <tuple>
#include <type_traits>

#include "core/returns.h"
#include "ops/hyper.h"
#include "ops/register.h"

namespace fastrl {

template <typename T>
core::View2D<T> view2d(const at::Tensor& t) {
  return {t.data_ptr<std::remove_const_t<T>>(), t.stride(0), t.stride(1)};
}

// Bool tensors are read as bytes: GCC does not vectorize loads of `bool`.
inline core::View2D<const uint8_t> flags2d(const at::Tensor& t) {
  return {reinterpret_cast<const uint8_t*>(t.data_ptr<bool>()), t.stride(0), t.stride(1)};
}

inline void check_like(const at::Tensor& ref, const at::Tensor& t, const char* name,
                       std::optional<at::ScalarType> dtype) {
  TORCH_CHECK(t.sizes() == ref.sizes(), "fastrl: ", name, " must have shape ", ref.sizes(),
              " like rewards, got ", t.sizes());
  TORCH_CHECK(t.device() == ref.device(), "fastrl: ", name, " is on ", t.device(),
              " but rewards is on ", ref.device());
  if (dtype) {
    TORCH_CHECK(t.scalar_type() == *dtype, "fastrl: ", name, " must be ", *dtype, ", got ",
                t.scalar_type());
  }
}

inline void check_rewards(const at::Tensor& rewards) {
  TORCH_CHECK(rewards.dim() == 2, "fastrl: rewards must be [T, N], got ", rewards.dim(), " dims");
  TORCH_CHECK(rewards.scalar_type() == at::kFloat || rewards.scalar_type() == at::kDouble,
              "fastrl: rewards must be float32 or float64, got ", rewards.scalar_type());
}

inline void check_discount(double x, const char* name) {
  TORCH_CHECK(x >= 0.0 && x <= 1.0, "fastrl: ", name, " must be in [0, 1], got ", x);
}

struct GaeOutputs {
  at::Tensor advantages, returns;  // [T, N], laid out like rewards
  std::tuple<at::Tensor, at::Tensor> tuple() const { return {advantages, returns}; }
};

// Outputs take the strides of `rewards` (empty_like preserves a dense layout), so batch-first
// inputs give batch-first outputs; the fake kernels in fastrl/ops/returns.py do the same.
inline GaeOutputs check_gae(
    const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& next_values,
    const at::Tensor& terminated, const at::Tensor& done, const std::optional<at::Tensor>& mask,
    double gamma, double lam) {
  check_rewards(rewards);
  check_like(rewards, values, "values", rewards.scalar_type());
  check_like(rewards, next_values, "next_values", rewards.scalar_type());
  check_like(rewards, terminated, "terminated", at::kBool);
  check_like(rewards, done, "done", at::kBool);
  if (mask) check_like(rewards, *mask, "mask", at::kBool);
  check_discount(gamma, "gamma");
  check_discount(lam, "lam");
  return {at::empty_like(rewards), at::empty_like(rewards)};
}

inline at::Tensor check_discounted_returns(const at::Tensor& rewards, const at::Tensor& done,
                                           const at::Tensor& bootstrap,
                                           const std::optional<at::Tensor>& mask, double gamma) {
  check_rewards(rewards);
  check_like(rewards, done, "done", at::kBool);
  if (mask) check_like(rewards, *mask, "mask", at::kBool);
  TORCH_CHECK(bootstrap.dim() == 1 && bootstrap.size(0) == rewards.size(1),
              "fastrl: bootstrap must be [N] = [", rewards.size(1), "], got ", bootstrap.sizes());
  TORCH_CHECK(bootstrap.scalar_type() == rewards.scalar_type() && bootstrap.device() == rewards.device(),
              "fastrl: bootstrap must match rewards' dtype and device");
  check_discount(gamma, "gamma");
  return at::empty_like(rewards);
}

// Calls f(std::true_type) when there is a mask, f(std::false_type) otherwise.
template <typename F>
void dispatch_mask(const std::optional<at::Tensor>& mask, F&& f) {
  if (mask) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

template <typename T, bool kMasked>
core::GaeProblem<T, kMasked> make_gae_problem(const at::Tensor& rewards, const at::Tensor& values,
                                     const at::Tensor& next_values, const at::Tensor& terminated,
                                     const at::Tensor& done, const std::optional<at::Tensor>& mask,
                                     double gamma, double lam, const at::Tensor& advantages,
                                     const at::Tensor& returns) {
  core::GaeProblem<T, kMasked> p;
  p.rewards = view2d<const T>(rewards);
  p.values = view2d<const T>(values);
  p.next_values = view2d<const T>(next_values);
  p.terminated = flags2d(terminated);
  p.done = flags2d(done);
  if (mask) p.mask = flags2d(*mask);
  p.advantages = view2d<T>(advantages);
  p.returns = view2d<T>(returns);
  p.gamma = static_cast<T>(gamma);
  p.gamma_lam = static_cast<T>(gamma * lam);
  return p;
}

template <typename T, bool kMasked>
core::DiscountedReturnsProblem<T, kMasked> make_discounted_returns_problem(
    const at::Tensor& rewards, const at::Tensor& done, const at::Tensor& bootstrap,
    const std::optional<at::Tensor>& mask, double gamma, const at::Tensor& returns) {
  core::DiscountedReturnsProblem<T, kMasked> p;
  p.rewards = view2d<const T>(rewards);
  p.done = flags2d(done);
  if (mask) p.mask = flags2d(*mask);
  p.bootstrap = bootstrap.data_ptr<T>();
  p.returns = view2d<T>(returns);
  p.gamma = static_cast<T>(gamma);
  return p;
}

inline bool is_time_major(const at::Tensor& x) { return x.stride(1) == 1 || x.size(1) == 1; }

// The ops, written once for every backend and both hyper-parameter types (ops/hyper.h).
// `Backend::run(problem, T, N, time_major)` is the backend's loop or kernel launch
// (cpu/returns.cpp, cuda/returns.cu, which register these).
template <typename Backend, typename Hypers>
std::tuple<at::Tensor, at::Tensor> gae(const at::Tensor& rewards, const at::Tensor& values,
                                       const at::Tensor& next_values, const at::Tensor& terminated,
                                       const at::Tensor& done, const std::optional<at::Tensor>& mask,
                                       typename Hypers::Arg gamma_arg, typename Hypers::Arg lam_arg) {
  const double gamma = hyper(gamma_arg), lam = hyper(lam_arg);
  const GaeOutputs out = check_gae(rewards, values, next_values, terminated, done, mask, gamma, lam);
  // After the checks: a tensor on another device gets fastrl's message, not the guard's assert.
  const c10::DeviceGuard guard(rewards.device());
  AT_DISPATCH_FLOATING_TYPES(rewards.scalar_type(), "fastrl::gae", [&] {
    dispatch_mask(mask, [&](auto masked) {
      Backend::run(make_gae_problem<scalar_t, masked>(rewards, values, next_values, terminated, done,
                                                      mask, gamma, lam, out.advantages, out.returns),
                   rewards.size(0), rewards.size(1), is_time_major(rewards));
    });
  });
  return out.tuple();
}

template <typename Backend, typename Hypers>
at::Tensor discounted_returns(const at::Tensor& rewards, const at::Tensor& done,
                              const at::Tensor& bootstrap, const std::optional<at::Tensor>& mask,
                              typename Hypers::Arg gamma_arg) {
  const double gamma = hyper(gamma_arg);
  at::Tensor returns = check_discounted_returns(rewards, done, bootstrap, mask, gamma);
  const c10::DeviceGuard guard(rewards.device());  // after the checks, as in gae
  const at::Tensor boot = bootstrap.contiguous();
  AT_DISPATCH_FLOATING_TYPES(rewards.scalar_type(), "fastrl::discounted_returns", [&] {
    dispatch_mask(mask, [&](auto masked) {
      Backend::run(make_discounted_returns_problem<scalar_t, masked>(rewards, done, boot, mask, gamma,
                                                                     returns),
                   rewards.size(0), rewards.size(1), is_time_major(rewards));
    });
  });
  return returns;
}

// The family's ops, registered with each backend (cpu/returns.cpp, cuda/returns.cu): an op whose
// problem the backends' run() serves (a backward scan of columns: scalar_t, initial_carry,
// valid, affine, write; core/returns.h) needs only its line here.
template <typename Backend>
void register_returns_ops(torch::Library& m) {
  FASTRL_IMPL_WITH_TENSOR_HYPER(m, gae, Backend);
  FASTRL_IMPL_WITH_TENSOR_HYPER(m, discounted_returns, Backend);
}

}  // namespace fastrl
