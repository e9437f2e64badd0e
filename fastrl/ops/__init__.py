"""The kernels. Each op checks its arguments, then runs natively (torch.ops.fastrl.*) when the
extension has kernels for the device, else its PyTorch reference/fallback.

Name of each op module = name of its kernel files (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu),
tests (tests/ops/test_<op>.py) and benchmark (bench/bench_<op>.py).
"""

from fastrl.ops.ppo_loss import (
    gaussian_ppo_loss,
    ppo_loss,
    ppo_loss_from_hidden,
    token_logprobs,
    value_loss,
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
]

# Public op name -> (module, native op names); drives `fastrl info` and the generic op tests.
NATIVE_OPS = {
    "gae": ("fastrl.ops.returns", ("gae",)),
    "discounted_returns": ("fastrl.ops.returns", ("discounted_returns",)),
    "ppo_loss": ("fastrl.ops.ppo_loss", ("ppo_loss", "token_logprobs_backward")),
    "ppo_loss_from_hidden": ("fastrl.ops.ppo_loss", ("ppo_loss", "token_logprobs_backward")),
    "token_logprobs": ("fastrl.ops.ppo_loss", ("token_logprobs", "token_logprobs_backward")),
    "envs": ("fastrl.envs.vector", ("env_reset", "env_step")),
    "minatar": ("fastrl.envs.minatar.vector", ("minatar_reset", "minatar_step")),
}
