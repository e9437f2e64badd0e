"""The native envs: read from fastrl._C's registry (csrc/core/envs/registry.h), not restated.

``NATIVE_SPECS`` maps each native gymnasium id to a :class:`NativeEnvSpec` as the C++ env header
declares it; without the extension, as the PyTorch fallback's classes (fastrl/envs/classic.py)
declare it, a copy that tests/envs/test_registry.py checks against ``_C``'s.
"""

from __future__ import annotations

import dataclasses

from fastrl import _native
from fastrl.envs.classic import FALLBACKS, Physics


@dataclasses.dataclass(frozen=True, kw_only=True)
class NativeEnvSpec:
    """A native env as its kernels see it.

    Attributes:
        id: gymnasium's id.
        state_dim: rows of the SoA state ``[S, N]`` (the layout of gymnasium's
            ``env.unwrapped.state``).
        obs_dim: size of one observation.
        reset_draws: uniforms a reset draws from the env's Philox stream.
        params: gymnasium's keyword arguments and their defaults, in the order the native ops take
            their values; a bool default marks a flag (passed as 0 or 1).
    """

    id: str
    state_dim: int
    obs_dim: int
    reset_draws: int
    params: dict[str, bool | float] = dataclasses.field(hash=False)

    @classmethod
    def from_extension(cls, env_id: str, entry: dict) -> NativeEnvSpec:
        """The spec from an entry of ``_C.native_envs()``."""
        return cls(id=env_id, state_dim=entry["state_dim"], obs_dim=entry["obs_dim"],
                   reset_draws=entry["reset_draws"], params=dict(entry["params"]))

    @classmethod
    def from_fallback(cls, physics: type[Physics]) -> NativeEnvSpec:
        """The spec the PyTorch fallback's class declares."""
        return cls(id=physics.id, state_dim=physics.state_dim, obs_dim=physics.obs_dim,
                   reset_draws=physics.reset_draws, params=physics.defaults())

    def op_params(self, values: dict) -> list[float]:
        """The native ops' ``params``: the keyword arguments' values (flags as 0 or 1) in order."""
        return [float(values[name]) for name in self.params]


FALLBACK_SPECS = {env_id: NativeEnvSpec.from_fallback(physics) for env_id, physics in FALLBACKS.items()}

if _native._C is not None:
    NATIVE_SPECS = {k: NativeEnvSpec.from_extension(k, v) for k, v in _native._C.native_envs().items()}
else:
    NATIVE_SPECS = FALLBACK_SPECS

# The ids of the native envs, in the registry's order.
NATIVE_ENVS = tuple(NATIVE_SPECS)
