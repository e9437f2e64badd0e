"""The kernels. Each op checks its arguments, then runs natively (torch.ops.fastrl.*) when the
extension has kernels for the device, else its PyTorch reference/fallback.

Name of each op module = name of its kernel files (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu),
tests (tests/ops/test_<op>.py) and benchmark (bench/bench_<op>.py). Beside them:
``chunked_linear`` (the fused-linear base of the ``*_from_hidden`` losses) and ``plain_losses``
(value and Gaussian-policy losses in plain PyTorch, no kernel). ``rmsprop`` holds an optimizer's
step (fastrl.optim.RMSprop's), in place and with no outputs or gradients: so it is not in
``__all__``, whose ops the generic op suite (tests/ops/opinfo.py) checks; tests/ops/test_rmsprop.py
has its own checks.
"""

from fastrl.ops import rmsprop  # noqa: F401  (registers its fake kernel, as the others' imports do)
from fastrl.ops.plain_losses import gaussian_ppo_loss, value_loss
from fastrl.ops.ppo_loss import (
    IMPORTANCE_LEVELS,
    KL_ESTIMATORS,
    NORMALIZATIONS,
    POLICY_LOSSES,
    ppo_loss,
    ppo_loss_from_hidden,
    token_logprobs,
)
from fastrl.ops.returns import discounted_returns, gae, rollout_next_values

__all__ = [
    "gae",
    "discounted_returns",
    "rollout_next_values",
    "ppo_loss",
    "ppo_loss_from_hidden",
    "token_logprobs",
    "value_loss",
    "gaussian_ppo_loss",
    "KL_ESTIMATORS",  # the values of kl_estimator=
    "NORMALIZATIONS",  # the values of normalize=
    "IMPORTANCE_LEVELS",  # the values of importance_level=
    "POLICY_LOSSES",  # the values of policy_loss=
]

# Public op name -> (module, native op names); drives `fastrl info` and the generic op tests.
# <op>_tensor_hyper: the twin torch.compile calls (csrc/ops/hyper.h).
_PPO = ("ppo_loss", "ppo_loss_tensor_hyper", "token_logprobs_backward", "token_logprobs_backward_tensor_hyper")
_TOKEN = ("token_logprobs", "token_logprobs_tensor_hyper", "token_logprobs_backward",
          "token_logprobs_backward_tensor_hyper")  # fmt: skip
NATIVE_OPS = {
    "gae": ("fastrl.ops.returns", ("gae", "gae_tensor_hyper")),
    "discounted_returns": ("fastrl.ops.returns", ("discounted_returns", "discounted_returns_tensor_hyper")),
    "ppo_loss": ("fastrl.ops.ppo_loss", _PPO),
    "ppo_loss_from_hidden": ("fastrl.ops.ppo_loss", _PPO),
    "token_logprobs": ("fastrl.ops.ppo_loss", _TOKEN),
    "envs": ("fastrl.envs.vector", ("env_reset", "env_step")),
    "minatar": ("fastrl.envs.minatar.vector", ("minatar_reset", "minatar_step")),
    "rmsprop_centered_": ("fastrl.ops.rmsprop", ("rmsprop_centered_",)),
}
