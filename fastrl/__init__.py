"""fastrl: reinforcement learning in PyTorch with C++/CUDA kernels on the hot paths.

``fastrl.ops`` holds the kernels (GAE, discounted returns, ...), each with a PyTorch fallback;
``python -m fastrl info`` shows which backend each op uses; ``fastrl.load_policy(run_dir)`` gives
a trained policy without its trainer.
"""

from fastrl import ops
from fastrl._native import get_backend, set_backend
from fastrl.policy import Policy, export_policy, load_policy

__version__ = "0.1.0"
__all__ = ["ops", "get_backend", "set_backend", "load_policy", "export_policy", "Policy", "__version__"]
