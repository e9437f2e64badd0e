// The op table: the schema of every op, and nothing else. Each kernel file registers its own
// implementations (TORCH_LIBRARY_IMPL at the end of cpu/*.cpp and cuda/*.cu, instances of the op
// templates in ops/*.h); fake kernels and Python wrappers live in fastrl/ops/, the pybind11
// module in module.cpp.
#include <torch/library.h>

#include <string>

namespace {

// Defines an op whose hyper-parameters are `float`s, and its twin <op>_tensor_hyper, the same
// schema with each `float` a `Tensor` (0-dim, on the CPU): what the Python wrappers call under
// torch.compile, where a float argument would cost a recompile per value (ops/hyper.h). A twin
// rather than an overload, since torch.library.opcheck takes only ops without overloads.
void def_with_tensor_hyper(torch::Library& m, const std::string& schema) {
  m.def(torch::schema(schema.c_str()));
  const size_t open = schema.find('(');
  std::string tensors = schema.substr(0, open) + "_tensor_hyper" + schema.substr(open);
  for (size_t at = tensors.find("float"); at != std::string::npos; at = tensors.find("float", at)) {
    tensors.replace(at, 5, "Tensor");
  }
  m.def(torch::schema(tensors.c_str()));
}

}  // namespace

TORCH_LIBRARY(fastrl, m) {
  // Time-major [T, N] views with any strides; flags and mask are bool.
  def_with_tensor_hyper(m,
      "gae(Tensor rewards, Tensor values, Tensor next_values, Tensor terminated, Tensor done, "
      "Tensor? mask, float gamma, float lam) -> (Tensor advantages, Tensor returns)");
  def_with_tensor_hyper(m,
      "discounted_returns(Tensor rewards, Tensor done, Tensor bootstrap, Tensor? mask, "
      "float gamma) -> Tensor");
  // Centred RMSProp's step in place (core/rmsprop.h); tensors i of the four lists alike in dtype
  // (float32/float64), device, shape and strides, and dense.
  m.def("rmsprop_centered_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] square_avgs, "
        "Tensor(c!)[] grad_avgs, float lr, float alpha, float eps) -> ()");
  // Batched environments, stepped in place: state [S, N] SoA, per-env counters [N]; `params` are
  // the env's keyword arguments in the order of its kParams (core/envs/<env>.h, _C.native_envs).
  m.def("env_reset(str env, Tensor(a!) state, Tensor(b!) elapsed, Tensor(c!) episode_return, "
        "Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, float[] params, int first_env=0) -> Tensor obs");
  m.def("env_step(str env, Tensor(a!) state, Tensor(b!) elapsed, Tensor(c!) episode_return, "
        "Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, Tensor action, float[] params, "
        "int max_episode_steps, bool same_step, int first_env=0) -> (Tensor obs, Tensor reward, Tensor terminated, "
        "Tensor truncated, Tensor done, Tensor final_obs, Tensor final_return, Tensor final_length)");
  // The MinAtar games, as the env ops on state int32 [N, 1 + S]: obs and final_obs are
  // bool [N, 10, 10, C]; params are core::minatar::kParams' values.
  m.def("minatar_reset(str env, Tensor(a!) state, Tensor(b!) elapsed, Tensor(c!) episode_return, "
        "Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, float[] params, int first_env=0) "
        "-> Tensor obs");
  m.def("minatar_step(str env, Tensor(a!) state, Tensor(b!) elapsed, "
        "Tensor(c!) episode_return, Tensor(d!) autoreset, Tensor(e!) resets, Tensor seeds, "
        "Tensor action, float[] params, int max_episode_steps, bool same_step, int first_env=0) "
        "-> (Tensor obs, Tensor reward, Tensor terminated, Tensor truncated, Tensor done, "
        "Tensor final_obs, Tensor final_return, Tensor final_length)");
  // logits [N, V] (half/bfloat16/float/double, any strides), actions int64 [N], mask bool [N];
  // per-token tensors [N] in float32 (float64 for float64 logits). Math: core/ppo_loss.h.
  // ppo_loss: seq_len 0 is token-level importance, L > 0 sequence-level over runs of L tokens.
  def_with_tensor_hyper(m,
      "token_logprobs(Tensor logits, Tensor actions, Tensor? mask, float temperature) "
      "-> (Tensor logp, Tensor entropy, Tensor lse)");
  def_with_tensor_hyper(m,
      "token_logprobs_backward(Tensor grad_logp, Tensor grad_entropy, Tensor logits, "
      "Tensor actions, Tensor? mask, Tensor lse, Tensor entropy, float temperature) -> Tensor");
  def_with_tensor_hyper(m,
      "ppo_loss(Tensor logits, Tensor actions, Tensor old_logprobs, Tensor advantages, "
      "Tensor? ref_logprobs, Tensor? mask, Tensor? token_weights, float clip_low, float clip_high, "
      "float? dual_clip, float kl_coef, str kl_estimator, float entropy_coef, float temperature, "
      "str policy_loss, int seq_len, bool kl_ratio_weighted) -> (Tensor loss, "
      "Tensor logp, Tensor entropy, Tensor lse, Tensor dloss_dlogp, Tensor ratio, Tensor kl, "
      "Tensor clipped)");
}
