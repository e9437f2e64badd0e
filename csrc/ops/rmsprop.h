// The fused centred RMSProp step (math: core/rmsprop.h), written once for the CPU and CUDA
// kernels that cpu/rmsprop.cpp and cuda/rmsprop.cu register: argument checks (for callers of
// torch.ops.fastrl.rmsprop_centered_ that skip the Python wrapper, fastrl/ops/rmsprop.py), then
// `Backend::run(param, grad, square_avg, grad_avg, n, hypers)` over each parameter's n elements.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/core/DeviceGuard.h>

#include "core/rmsprop.h"

namespace fastrl {

// Parameter i and its gradient and state: one dtype, device, shape and strides, and dense, so a
// kernel walks the four as flat arrays of numel elements.
inline void check_rmsprop_tensors(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                                  at::TensorList grad_avgs, double lr, double alpha, double eps) {
  TORCH_CHECK(grads.size() == params.size() && square_avgs.size() == params.size() &&
                  grad_avgs.size() == params.size(),
              "fastrl: params, grads, square_avgs and grad_avgs must be lists of one length, got ",
              params.size(), ", ", grads.size(), ", ", square_avgs.size(), " and ", grad_avgs.size());
  TORCH_CHECK(lr >= 0.0, "fastrl: lr must be >= 0, got ", lr);
  TORCH_CHECK(alpha >= 0.0 && alpha <= 1.0, "fastrl: alpha must be in [0, 1], got ", alpha);
  TORCH_CHECK(eps >= 0.0, "fastrl: eps must be >= 0, got ", eps);
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble,
                "fastrl: params[", i, "] must be float32 or float64, got ", p.scalar_type());
    TORCH_CHECK(p.device() == params[0].device(), "fastrl: params[", i, "] is on ", p.device(),
                " but params[0] is on ", params[0].device());
    TORCH_CHECK(p.is_non_overlapping_and_dense(), "fastrl: params[", i, "] must be dense (no gaps or overlaps)");
    const std::pair<const char*, const at::Tensor*> others[] = {
        {"grads", &grads[i]}, {"square_avgs", &square_avgs[i]}, {"grad_avgs", &grad_avgs[i]}};
    for (const auto& [name, t] : others) {
      TORCH_CHECK(t->scalar_type() == p.scalar_type() && t->device() == p.device() && t->sizes() == p.sizes() &&
                      t->strides() == p.strides(),
                  "fastrl: ", name, "[", i, "] must have params[", i, "]'s dtype, device, shape and strides (",
                  p.scalar_type(), ", ", p.device(), ", ", p.sizes(), ", ", p.strides(), "), got ",
                  t->scalar_type(), ", ", t->device(), ", ", t->sizes(), ", ", t->strides());
    }
  }
}

template <typename Backend>
void rmsprop_centered_(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                       at::TensorList grad_avgs, double lr, double alpha, double eps) {
  check_rmsprop_tensors(params, grads, square_avgs, grad_avgs, lr, alpha, eps);
  if (params.empty()) return;
  const c10::DeviceGuard guard(params[0].device());  // after the checks (ops/envs.h says why)
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].numel() == 0) continue;
    AT_DISPATCH_FLOATING_TYPES(params[i].scalar_type(), "rmsprop_centered_", [&] {
      Backend::run(params[i].data_ptr<scalar_t>(), grads[i].data_ptr<scalar_t>(),
                   square_avgs[i].data_ptr<scalar_t>(), grad_avgs[i].data_ptr<scalar_t>(), params[i].numel(),
                   core::RMSpropHypers<scalar_t>::from(lr, alpha, eps));
    });
  }
}

}  // namespace fastrl
