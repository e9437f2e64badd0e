"""The kernels. Each op checks its arguments, then runs natively (torch.ops.fastrl.*) when the
extension has kernels for the device, else its PyTorch reference/fallback.

Name of each op module = name of its kernel files (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu),
tests (tests/ops/test_<op>.py) and benchmark (bench/bench_<op>.py).
"""

from fastrl.ops.returns import discounted_returns, gae, rollout_next_values

__all__ = ["gae", "discounted_returns", "rollout_next_values"]

# Public op name -> (module, native op names); drives `fastrl info` and the generic op tests.
NATIVE_OPS = {
    "gae": ("fastrl.ops.returns", ("gae",)),
    "discounted_returns": ("fastrl.ops.returns", ("discounted_returns",)),
    "envs": ("fastrl.envs.vector", ("env_reset", "env_step")),
}
