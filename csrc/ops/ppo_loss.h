// The token_logprobs and ppo_loss ops, written once for the CPU and CUDA kernels (templates over
// the backend that cpu/ppo_loss.cpp and cuda/ppo_loss.cu register): argument checks (for callers
// of torch.ops.fastrl.* that skip the Python wrapper), output allocation, and the translation
// into the torch-free problems of core/ppo_loss.h.
//
// Layout: logits [N, V] (any strides, float16/bfloat16/float32/float64), actions int64 [N],
// mask bool [N]. Per-token tensors are [N] in the accumulation dtype: float64 for float64 logits,
// float32 otherwise. The logits gradient is contiguous [N, V] in the logits dtype.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/core/DeviceGuard.h>
#include <optional>
#include <string_view>
#include <tuple>

#include "core/ppo_loss.h"
#include "ops/hyper.h"
#include "ops/register.h"

namespace fastrl {

inline at::ScalarType ppo_acc_dtype(const at::Tensor& logits) {
  return logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_logits(const at::Tensor& logits, const at::Tensor& actions,
                         const std::optional<at::Tensor>& mask, double temperature) {
  TORCH_CHECK(logits.dim() == 2, "fastrl: logits must be [N, V], got ", logits.dim(), " dims");
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "fastrl: logits must be floating point, got ", logits.scalar_type());
  TORCH_CHECK(logits.size(1) >= 1, "fastrl: logits need a vocabulary of at least 1");
  TORCH_CHECK(actions.dim() == 1 && actions.size(0) == logits.size(0),
              "fastrl: actions must be [N] = [", logits.size(0), "], got ", actions.sizes());
  TORCH_CHECK(actions.scalar_type() == at::kLong, "fastrl: actions must be int64, got ",
              actions.scalar_type());
  TORCH_CHECK(actions.device() == logits.device(), "fastrl: actions is on ", actions.device(),
              " but logits is on ", logits.device());
  if (mask) {
    TORCH_CHECK(mask->sizes() == actions.sizes() && mask->scalar_type() == at::kBool &&
                    mask->device() == logits.device(),
                "fastrl: mask must be bool [N] on ", logits.device());
  }
  TORCH_CHECK(temperature > 0.0, "fastrl: temperature must be > 0, got ", temperature);
}

// A per-token input: [N], the accumulation dtype, the logits' device.
inline at::Tensor token_input(const at::Tensor& t, const at::Tensor& logits, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == logits.size(0), "fastrl: ", name, " must be [N] = [",
              logits.size(0), "], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ppo_acc_dtype(logits), "fastrl: ", name, " must be ",
              ppo_acc_dtype(logits), " for ", logits.scalar_type(), " logits, got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == logits.device(), "fastrl: ", name, " is on ", t.device(),
              " but logits is on ", logits.device());
  return t.contiguous();
}

inline core::KlEstimator parse_kl_estimator(std::string_view name) {
  if (name == "k1") return core::KlEstimator::k1;
  if (name == "k2") return core::KlEstimator::k2;
  TORCH_CHECK(name == "k3", "fastrl: kl_estimator must be k1, k2 or k3, got ", name);
  return core::KlEstimator::k3;
}

inline void check_ppo_params(double clip_low, double clip_high, std::optional<double> dual_clip) {
  TORCH_CHECK(clip_low >= 0.0 && clip_high >= 0.0, "fastrl: clip_low and clip_high must be >= 0");
  TORCH_CHECK(!dual_clip || *dual_clip > 1.0, "fastrl: dual_clip must be > 1, got ",
              dual_clip.value_or(0.0));
}

// policy_loss "ppo" or "cispo": whether it is CISPO.
inline bool parse_policy_loss(std::string_view name, bool dual_clip) {
  TORCH_CHECK(name == "ppo" || name == "cispo", "fastrl: policy_loss must be ppo or cispo, got ",
              name);
  TORCH_CHECK(name == "ppo" || !dual_clip, "fastrl: dual_clip applies to policy_loss ppo only");
  return name == "cispo";
}

// Sequence-level importance (GSPO): per token [N], the mean of logp - old over the valid tokens
// of its sequence (runs of seq_len consecutive tokens); 0 for a sequence without valid tokens,
// whose tokens are all masked anyway. A small [S, L] reduction between the row pass and the
// terms, in ATen on the logits' device.
inline at::Tensor sequence_log_ratio(const at::Tensor& logp, const at::Tensor& old,
                                     const std::optional<at::Tensor>& mask, int64_t seq_len) {
  at::Tensor log_ratio = logp - old;
  at::Tensor count = at::full({1}, static_cast<double>(seq_len), logp.options());
  if (mask) {
    // where(), not a product: old may be NaN or inf at masked tokens.
    log_ratio = at::where(*mask, log_ratio, at::zeros({}, logp.options()));
    count = mask->view({-1, seq_len}).sum(1).to(logp.scalar_type()).clamp_min(1.0);
  }
  const at::Tensor per_seq = log_ratio.view({-1, seq_len}).sum(1) / count;  // [S]
  return per_seq.unsqueeze(1).expand({per_seq.size(0), seq_len}).reshape({-1}).contiguous();
}

inline at::Tensor token_output(const at::Tensor& logits) {
  return at::empty({logits.size(0)}, logits.options().dtype(ppo_acc_dtype(logits)));
}

inline std::optional<at::Tensor> contiguous(const std::optional<at::Tensor>& t) {
  return t ? std::optional<at::Tensor>(t->contiguous()) : std::nullopt;
}

template <typename scalar_t, typename T>
core::LogitRows<scalar_t, T> make_logit_rows(const at::Tensor& logits, const at::Tensor& actions,
                                             const std::optional<at::Tensor>& mask,
                                             double temperature) {
  core::LogitRows<scalar_t, T> rows;
  rows.data = logits.data_ptr<scalar_t>();
  rows.num_rows = logits.size(0);
  rows.vocab = logits.size(1);
  rows.row_stride = logits.stride(0);
  rows.col_stride = logits.stride(1);
  rows.actions = actions.data_ptr<int64_t>();
  rows.mask = mask ? mask->data_ptr<bool>() : nullptr;
  rows.inv_temp = static_cast<T>(1.0 / temperature);
  return rows;
}

// Outputs by name inside; the op schemas (csrc/bindings.cpp) return them as tuples, in this order.
struct TokenLogprobsOutputs {
  at::Tensor logp, entropy, lse;  // [N] each
  std::tuple<at::Tensor, at::Tensor, at::Tensor> tuple() const { return {logp, entropy, lse}; }
};

// The forward problem of token_logprobs: per-row log-prob, entropy and lse (ppo_loss adds its
// inputs and outputs to it).
template <typename scalar_t, typename T = at::opmath_type<scalar_t>>
core::RowProblem<scalar_t, T> make_row_problem(const at::Tensor& logits, const at::Tensor& actions,
                                               const std::optional<at::Tensor>& mask,
                                               double temperature, const TokenLogprobsOutputs& out) {
  core::RowProblem<scalar_t, T> p;
  p.rows = make_logit_rows<scalar_t, T>(logits, actions, mask, temperature);
  p.logp = out.logp.data_ptr<T>();
  p.entropy = out.entropy.data_ptr<T>();
  p.lse = out.lse.data_ptr<T>();
  return p;
}

struct PpoOutputs {
  at::Tensor loss, logp, entropy, lse, dloss_dlogp, ratio, kl, clipped;  // [N] each
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
             at::Tensor>
  tuple() const {
    return {loss, logp, entropy, lse, dloss_dlogp, ratio, kl, clipped};
  }
};

// The three ops, written once for every backend and both hyper-parameter types (ops/hyper.h): checks,
// allocation, dtype dispatch and problem construction. `Backend::run(problem)` is the backend's
// driver, called with a row reduction (the two forward ops' core::RowProblem; any problem with
// its `rows`, `fill` and `write` is one) or a core::GradProblem (the backward);
// `Backend::run_terms(problem)` calls write_terms(r) on every active row with a valid action;
// cpu/ppo_loss.cpp and cuda/ppo_loss.cu define it and register these functions.

template <typename Backend, typename Hypers>
std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs(
    const at::Tensor& logits, const at::Tensor& actions, const std::optional<at::Tensor>& mask,
    typename Hypers::Arg temperature_arg) {
  const double temperature = hyper(temperature_arg);
  check_logits(logits, actions, mask, temperature);
  const at::Tensor acts = actions.contiguous();
  const auto m = contiguous(mask);
  const TokenLogprobsOutputs out{token_output(logits), token_output(logits), token_output(logits)};
  // After the checks: a tensor on another device gets fastrl's message, not the guard's assert.
  const c10::DeviceGuard guard(logits.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "fastrl::token_logprobs", [&] {
    Backend::run(make_row_problem<scalar_t>(logits, acts, m, temperature, out));
  });
  return out.tuple();
}

template <typename Backend, typename Hypers>
decltype(PpoOutputs{}.tuple()) ppo_loss(
    const at::Tensor& logits, const at::Tensor& actions, const at::Tensor& old_logprobs,
    const at::Tensor& advantages, const std::optional<at::Tensor>& ref_logprobs,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& token_weights,
    typename Hypers::Arg clip_low, typename Hypers::Arg clip_high,
    typename Hypers::OptionalArg dual_clip, typename Hypers::Arg kl_coef,
    c10::string_view kl_estimator, typename Hypers::Arg entropy_coef,
    typename Hypers::Arg temperature_arg, c10::string_view policy_loss, int64_t seq_len,
    bool kl_ratio_weighted) {
  const double temperature = hyper(temperature_arg);
  const double low = hyper(clip_low), high = hyper(clip_high);
  const std::optional<double> dual = hyper(dual_clip);
  check_logits(logits, actions, mask, temperature);
  check_ppo_params(low, high, dual);
  const core::KlEstimator estimator = parse_kl_estimator(kl_estimator);
  const bool cispo = parse_policy_loss(policy_loss, dual.has_value());
  TORCH_CHECK(seq_len >= 0, "fastrl: seq_len must be >= 0, got ", seq_len);
  TORCH_CHECK(seq_len == 0 || logits.size(0) % seq_len == 0, "fastrl: seq_len (", seq_len,
              ") must divide the number of tokens N = ", logits.size(0));
  const at::Tensor acts = actions.contiguous();
  const auto m = contiguous(mask);
  const at::Tensor old = token_input(old_logprobs, logits, "old_logprobs");
  const at::Tensor adv = token_input(advantages, logits, "advantages");
  std::optional<at::Tensor> ref;
  if (ref_logprobs) ref = token_input(*ref_logprobs, logits, "ref_logprobs");
  std::optional<at::Tensor> weights;
  if (token_weights) weights = token_input(*token_weights, logits, "token_weights");
  const bool by_sequence = seq_len > 0 && logits.size(0) > 0;
  const PpoOutputs out{token_output(logits), token_output(logits), token_output(logits),
                       token_output(logits), token_output(logits), token_output(logits),
                       token_output(logits), token_output(logits)};
  const c10::DeviceGuard guard(logits.device());  // after the checks, as in token_logprobs
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "fastrl::ppo_loss", [&] {
    using T = at::opmath_type<scalar_t>;
    auto p = make_row_problem<scalar_t>(logits, acts, m, temperature,
                                        {out.logp, out.entropy, out.lse});
    p.old_logp = old.data_ptr<T>();
    p.advantage = adv.data_ptr<T>();
    p.ref_logp = ref ? ref->data_ptr<T>() : nullptr;
    p.loss = out.loss.data_ptr<T>();
    p.dloss_dlogp = out.dloss_dlogp.data_ptr<T>();
    p.ratio = out.ratio.data_ptr<T>();
    p.kl = out.kl.data_ptr<T>();
    p.clipped = out.clipped.data_ptr<T>();
    p.params.ratio_low = static_cast<T>(1.0 - low);
    p.params.ratio_high = static_cast<T>(1.0 + high);
    p.params.dual_clip = static_cast<T>(dual.value_or(0.0));
    p.params.kl_coef = static_cast<T>(hyper(kl_coef));
    p.params.entropy_coef = static_cast<T>(hyper(entropy_coef));
    p.params.kl_estimator = estimator;
    p.params.cispo = cispo;
    p.params.kl_ratio_weighted = kl_ratio_weighted;
    p.weight = weights ? weights->data_ptr<T>() : nullptr;
    p.terms_later = by_sequence;
    Backend::run(p);
    if (by_sequence) {  // the terms need every logp of the sequence: a second, [N]-only pass
      const at::Tensor seq_log_ratio = sequence_log_ratio(out.logp, old, m, seq_len);
      p.seq_log_ratio = seq_log_ratio.data_ptr<T>();
      Backend::run_terms(p);
    }
  });
  return out.tuple();
}

template <typename Backend, typename Hypers>
at::Tensor token_logprobs_backward(const at::Tensor& grad_logp, const at::Tensor& grad_entropy,
                                   const at::Tensor& logits, const at::Tensor& actions,
                                   const std::optional<at::Tensor>& mask, const at::Tensor& lse,
                                   const at::Tensor& entropy, typename Hypers::Arg temperature_arg) {
  const double temperature = hyper(temperature_arg);
  check_logits(logits, actions, mask, temperature);
  const at::Tensor acts = actions.contiguous();
  const auto m = contiguous(mask);
  const at::Tensor g_logp = token_input(grad_logp, logits, "grad_logp");
  const at::Tensor g_entropy = token_input(grad_entropy, logits, "grad_entropy");
  const at::Tensor row_lse = token_input(lse, logits, "lse");
  const at::Tensor row_entropy = token_input(entropy, logits, "entropy");
  at::Tensor grad = at::empty({logits.size(0), logits.size(1)}, logits.options());
  const c10::DeviceGuard guard(logits.device());  // after the checks, as in token_logprobs
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "fastrl::token_logprobs_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    core::GradProblem<scalar_t, T> p;
    p.rows = make_logit_rows<scalar_t, T>(logits, acts, m, temperature);
    p.lse = row_lse.data_ptr<T>();
    p.entropy = row_entropy.data_ptr<T>();
    p.g_logp = g_logp.data_ptr<T>();
    p.g_entropy = g_entropy.data_ptr<T>();
    p.grad = grad.data_ptr<scalar_t>();
    Backend::run(p);
  });
  return grad;
}

// The family's ops, registered with each backend (cpu/ppo_loss.cpp, cuda/ppo_loss.cu): an op
// whose problem the backends' run() serves (a row reduction like RowProblem, or GradProblem;
// core/ppo_loss.h) needs only its line here.
template <typename Backend>
void register_ppo_loss_ops(torch::Library& m) {
  FASTRL_IMPL_WITH_TENSOR_HYPER(m, token_logprobs, Backend);
  FASTRL_IMPL_WITH_TENSOR_HYPER(m, token_logprobs_backward, Backend);
  FASTRL_IMPL_WITH_TENSOR_HYPER(m, ppo_loss, Backend);
}

}  // namespace fastrl
