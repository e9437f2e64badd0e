// The environment ops, written once for the CPU and CUDA kernels (templates over the backend that
// cpu/envs.cpp and cuda/envs.cu register): argument checks (for callers of torch.ops.fastrl.* that
// skip fastrl.envs), output allocation, the env-name dispatch and the translation of tensors into
// core::EnvBatch.
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/DeviceGuard.h>
#include <c10/util/SmallVector.h>

#include <string>
#include <tuple>
#include <type_traits>

#include "core/envs/batch.h"
#include "core/envs/registry.h"
#include "ops/output_pool.h"

namespace fastrl {

// Calls fn(EnvTag<E>{}) for the env named `env` (gymnasium's id), E any env of the registry.
template <template <typename> class E>
struct EnvTag {
  template <typename T>
  using type = E<T>;
};

template <typename Fn>
void visit_env(const std::string& env, Fn&& fn) {
#define FASTRL_VISIT_ENV(Env) \
  if (env == core::Env<float>::kId) return fn(EnvTag<core::Env>{});
  FASTRL_NATIVE_ENVS(FASTRL_VISIT_ENV)
#undef FASTRL_VISIT_ENV
  TORCH_CHECK(false, "fastrl: unknown env '", env, "'");
}

// The per-env tensors of a batch: state [S, N] float, elapsed [N] int32, episode_return [N]
// float, autoreset [N] bool, resets [N] int64, seeds [N] int64, all contiguous on one device.
struct EnvTensors {
  at::Tensor state, elapsed, episode_return, autoreset, resets, seeds;
};

// A per-env tensor: [N], dtype, on the state's device, contiguous.
inline void check_vector(const at::Tensor& t, const char* name, at::ScalarType dtype,
                         const at::Tensor& state, int64_t n) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "fastrl: ", name, " must be [N] = [", n, "], got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "fastrl: ", name, " must be ", dtype, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == state.device(), "fastrl: ", name, " is on ", t.device(),
              " but state is on ", state.device());
  TORCH_CHECK(t.is_contiguous(), "fastrl: ", name, " must be contiguous");
}

// The per-env counters of N envs (every tensor but the state, whose layout is the family's);
// episode_return in the family's float dtype.
inline void check_counters(const EnvTensors& e, int64_t n, at::ScalarType return_dtype) {
  check_vector(e.elapsed, "elapsed", at::kInt, e.state, n);
  check_vector(e.episode_return, "episode_return", return_dtype, e.state, n);
  check_vector(e.autoreset, "autoreset", at::kBool, e.state, n);
  check_vector(e.resets, "resets", at::kLong, e.state, n);
  check_vector(e.seeds, "seeds", at::kLong, e.state, n);
}

template <typename Env>
void check_env_tensors(const EnvTensors& e, at::ArrayRef<double> params) {
  const at::Tensor& s = e.state;
  TORCH_CHECK(s.dim() == 2 && s.size(0) == Env::kStateDim, "fastrl: state must be [",
              Env::kStateDim, ", N], got ", s.sizes());
  TORCH_CHECK(s.scalar_type() == at::kFloat || s.scalar_type() == at::kDouble,
              "fastrl: state must be float32 or float64, got ", s.scalar_type());
  TORCH_CHECK(s.is_contiguous(), "fastrl: state must be contiguous");
  check_counters(e, s.size(1), s.scalar_type());
  TORCH_CHECK(params.size() == Env::kParams.size(), "fastrl: expected ", Env::kParams.size(),
              " env params for ", Env::kId, ", got ", params.size());
}

// The counters of a core::EpisodeBatch (of any env family) from the tensors.
template <typename T>
void bind_counters(core::EpisodeBatch<T>& b, const EnvTensors& e, int64_t n) {
  b.n = n;
  b.elapsed = e.elapsed.data_ptr<int32_t>();
  b.episode_return = e.episode_return.data_ptr<T>();
  b.autoreset = reinterpret_cast<uint8_t*>(e.autoreset.data_ptr<bool>());
  b.resets = e.resets.data_ptr<int64_t>();
  b.seeds = e.seeds.data_ptr<int64_t>();
}

template <typename Env, typename T>
core::EnvBatch<Env, T> make_env_batch(const EnvTensors& e, at::ArrayRef<double> params) {
  core::EnvBatch<Env, T> b;
  bind_counters(b, e, e.state.size(1));
  b.state = e.state.data_ptr<T>();
  b.params = Env::params(params.data());
  return b;
}

// Outputs of env_step, by name; the schema (csrc/bindings.cpp) returns them as a tuple in this
// order. done = terminated | truncated; final_obs is [0, O] unless same_step (the fake kernel
// does the same).
struct StepOutputs {
  at::Tensor obs, reward, terminated, truncated, done, final_obs, final_return, final_length;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
             at::Tensor>
  tuple() const {
    return {obs, reward, terminated, truncated, done, final_obs, final_return, final_length};
  }
};

// What the registered env_step / minatar_step return: StepOutputs as the schema's tuple.
using StepTuple = decltype(StepOutputs{}.tuple());

// A shape as Python prints it, "(4,)" or "(4, 1)", so errors read like the Python checks'.
inline std::string py_shape(at::IntArrayRef sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + (sizes.size() == 1 ? ",)" : ")");
}

// Discrete actions as the kernels read them: int64 [N], contiguous (other integer dtypes are
// converted). The errors are the ones fastrl.envs raises: TypeError for the wrong kind of
// dtype, ValueError for a wrong shape or device. Action values are the kernels' to check.
inline at::Tensor checked_discrete_action(const at::Tensor& action, int64_t n,
                                          const at::Tensor& state, const std::string& env) {
  TORCH_CHECK_VALUE(action.device() == state.device(), "actions are on ", action.device(),
                    " but the env is on ", state.device());
  TORCH_CHECK_TYPE(at::isIntegralType(action.scalar_type(), /*includeBool=*/false),
                   "actions must be an integer tensor for ", env, ", got ", action.scalar_type());
  TORCH_CHECK_VALUE(action.dim() == 1 && action.size(0) == n, "actions must have shape (", n,
                    ",), got ", py_shape(action.sizes()));
  return action.to(at::kLong).contiguous();
}

// The actions as the classic envs' kernels read them: checked_discrete_action for discrete envs,
// [N, 1] in the state's dtype for continuous ones.
template <typename Env>
at::Tensor checked_action(const at::Tensor& action, const at::Tensor& state,
                          const std::string& env) {
  const int64_t n = state.size(1);
  if constexpr (std::is_integral<typename Env::Action>::value) {
    return checked_discrete_action(action, n, state, env);
  } else {
    TORCH_CHECK_VALUE(action.device() == state.device(), "actions are on ", action.device(),
                      " but the env is on ", state.device());
    TORCH_CHECK_TYPE(at::isFloatingType(action.scalar_type()),
                     "actions must be a floating-point tensor for ", env, ", got ",
                     action.scalar_type());
    TORCH_CHECK_VALUE(action.dim() == 2 && action.size(0) == n && action.size(1) == 1,
                      "actions must have shape (", n, ", 1), got ", py_shape(action.sizes()));
    return action.to(state.scalar_type()).contiguous();
  }
}

// at::empty, without the dispatcher on the CPU: a step allocates eight outputs, and at a few
// thousand envs the dispatcher's share of that is a tenth of the step. Large CPU outputs come
// from ops/output_pool.h, recycled rather than page-faulted in afresh each step.
inline at::Tensor new_output(at::IntArrayRef size, const at::TensorOptions& options) {
  if (options.device().is_cpu()) return pooled_empty_cpu(size, options);  // large ones recycled
  return at::empty(size, options);
}

// The outputs of a step of n envs: obs and final_obs [n, *obs_shape] (final_obs with 0 rows
// unless same_step) in obs_options, reward and final_return in float_options.
inline StepOutputs new_step_outputs(int64_t n, at::IntArrayRef obs_shape,
                                    const at::TensorOptions& obs_options,
                                    const at::TensorOptions& float_options, bool same_step) {
  c10::SmallVector<int64_t, 4> obs_size{n}, final_size{same_step ? n : 0};
  obs_size.insert(obs_size.end(), obs_shape.begin(), obs_shape.end());
  final_size.insert(final_size.end(), obs_shape.begin(), obs_shape.end());
  const auto bopts = float_options.dtype(at::kBool);
  return {new_output(obs_size, obs_options), new_output({n}, float_options),
          new_output({n}, bopts), new_output({n}, bopts), new_output({n}, bopts),
          new_output(final_size, obs_options), new_output({n}, float_options),
          new_output({n}, float_options.dtype(at::kInt))};
}

// The batch's time limit: max_episode_steps in [1, 2^31 - 1], or 0 for no time limit (episode
// lengths are int32).
inline uint32_t checked_time_limit(int64_t max_episode_steps) {
  TORCH_CHECK_VALUE(max_episode_steps >= 0 && max_episode_steps <= core::kMaxElapsed,
                    "max_episode_steps must be in [1, 2**31 - 1], or 0 for no time limit, got ",
                    max_episode_steps);
  return max_episode_steps == 0 ? core::kNoTimeLimit : static_cast<uint32_t>(max_episode_steps);
}

// The step outputs and settings of a core::EpisodeBatch (of any env family).
template <typename T>
void bind_step(core::EpisodeBatch<T>& b, const StepOutputs& out, uint32_t time_limit,
               bool same_step) {
  auto flags = [](const at::Tensor& t) { return reinterpret_cast<uint8_t*>(t.data_ptr<bool>()); };
  b.reward = out.reward.data_ptr<T>();
  b.terminated = flags(out.terminated);
  b.truncated = flags(out.truncated);
  b.done = flags(out.done);
  b.final_return = out.final_return.data_ptr<T>();
  b.final_length = out.final_length.data_ptr<int32_t>();
  b.max_episode_steps = time_limit;
  b.same_step = same_step;
}

// first_env: the global index of env 0 (its Philox stream); global indices are uint32 words below
// 2^31, like the kernels' local ones.
inline void check_first_env(int64_t first_env, int64_t n) {
  TORCH_CHECK_VALUE(first_env >= 0 && first_env <= core::kMaxElapsed - n,
                    "first_env must be in [0, 2**31 - 1 - num_envs], got ", first_env);
}

// The two ops, written once for every backend: resolve the env type and dtype, check the tensors,
// allocate the outputs and build the batch; `Backend::reset(batch)` and
// `Backend::step(batch, same_step)` are the backend's loop or kernel launch (cpu/envs.cpp,
// cuda/envs.cu, which register these functions). EnvBinding (env_binding.cpp) calls them through
// the dispatcher.
template <typename Backend>
at::Tensor env_reset(const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
                     const at::Tensor& episode_return, const at::Tensor& autoreset,
                     const at::Tensor& resets, const at::Tensor& seeds,
                     at::ArrayRef<double> params, int64_t first_env) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  at::Tensor obs;
  visit_env(env, [&](auto tag) {
    AT_DISPATCH_FLOATING_TYPES(e.state.scalar_type(), "fastrl::env_reset", [&] {
      using Env = typename decltype(tag)::template type<scalar_t>;
      check_env_tensors<Env>(e, params);
      check_first_env(first_env, e.state.size(1));
      // After the checks: a tensor on another device gets fastrl's message, not the guard's assert.
      const c10::DeviceGuard guard(state.device());
      obs = at::empty({e.state.size(1), Env::kObsDim}, e.state.options());
      auto b = make_env_batch<Env, scalar_t>(e, params);
      b.first_env = first_env;
      b.obs = obs.data_ptr<scalar_t>();
      if (b.n > 0) Backend::reset(b);
    });
  });
  return obs;
}

template <typename Backend>
StepTuple env_step(
    const std::string& env, const at::Tensor& state, const at::Tensor& elapsed,
    const at::Tensor& episode_return, const at::Tensor& autoreset, const at::Tensor& resets,
    const at::Tensor& seeds, const at::Tensor& action, at::ArrayRef<double> params,
    int64_t max_episode_steps, bool same_step, int64_t first_env) {
  const EnvTensors e{state, elapsed, episode_return, autoreset, resets, seeds};
  StepOutputs out;
  visit_env(env, [&](auto tag) {
    AT_DISPATCH_FLOATING_TYPES(e.state.scalar_type(), "fastrl::env_step", [&] {
      using Env = typename decltype(tag)::template type<scalar_t>;
      check_env_tensors<Env>(e, params);
      const at::Tensor a = checked_action<Env>(action, e.state, env);
      const uint32_t time_limit = checked_time_limit(max_episode_steps);
      const int64_t n = e.state.size(1);
      check_first_env(first_env, n);
      const c10::DeviceGuard guard(state.device());  // after the checks, as in env_reset
      out = new_step_outputs(n, {Env::kObsDim}, e.state.options(), e.state.options(), same_step);
      auto b = make_env_batch<Env, scalar_t>(e, params);
      bind_step(b, out, time_limit, same_step);
      b.first_env = first_env;
      b.action = a.data_ptr<typename Env::Action>();
      b.obs = out.obs.data_ptr<scalar_t>();
      b.final_obs = same_step ? out.final_obs.data_ptr<scalar_t>() : nullptr;
      if (b.n > 0) Backend::step(b, same_step);
    });
  });
  return out.tuple();
}

}  // namespace fastrl
