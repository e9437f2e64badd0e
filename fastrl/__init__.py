"""fastrl: reinforcement learning in PyTorch with C++/CUDA kernels on the hot paths.

``fastrl.ops`` holds the kernels (GAE, discounted returns, ...), each with a PyTorch fallback;
``python -m fastrl info`` shows which backend each op uses.
"""

from fastrl import ops
from fastrl._native import get_backend, set_backend

__version__ = "0.1.0"
__all__ = ["ops", "get_backend", "set_backend", "__version__"]
