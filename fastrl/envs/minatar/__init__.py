"""MinAtar's games natively in fastrl: ``fastrl.envs.make("MinAtar/Breakout-v1", num_envs)``.

Game logic once in csrc/core/minatar/<game>.h (CPU and CUDA kernels), a PyTorch fallback in
games.py, the classic envs' VectorEnv front end (vector.py). The ids, spaces and semantics are
the ``minatar`` package's gymnasium registration (docs/envs.md, "MinAtar").
"""

from fastrl.envs.minatar.spec import MINATAR_ENVS, MINATAR_SPECS, MinAtarSpec
from fastrl.envs.minatar.vector import MinAtarVectorEnv, make_minatar

__all__ = ["MINATAR_ENVS", "MINATAR_SPECS", "MinAtarSpec", "MinAtarVectorEnv", "make_minatar"]
