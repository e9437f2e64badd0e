"""The native MinAtar games and their ids: read from fastrl._C's registry
(csrc/core/minatar/registry.h), not restated; without the extension, as the PyTorch fallback's
games (fastrl/envs/minatar/games.py) declare them, a copy tests/envs/test_minatar.py checks.
"""

from __future__ import annotations

import dataclasses

from fastrl import _native
from fastrl.envs.minatar.games import GAMES, Field

# The keyword arguments of every game with their defaults (core::minatar::kParams): the package's
# Environment's.
FALLBACK_PARAMS = {"sticky_action_prob": 0.1, "difficulty_ramping": True}
PARAMS = dict(_native._C.minatar_params()) if _native._C is not None else FALLBACK_PARAMS


@dataclasses.dataclass(frozen=True, kw_only=True)
class MinAtarSpec:
    """One MinAtar id as its kernels see it.

    Attributes:
        id: ``MinAtar/<game>-v0`` (all six actions) or ``-v1`` (the game's minimal action set),
            the ``minatar`` package's gymnasium ids.
        game: the game's name.
        channels: C of the observations ``[10, 10, C]``.
        fields: the parts of the int32 state row, ``last_action`` first.
        action_set: the package's actions (0..5: n, l, u, r, d, f) of the id's action indices.
        params: the keyword arguments and their defaults, in the order the ops take them.
    """

    id: str
    game: str
    channels: int
    fields: tuple[Field, ...]
    action_set: tuple[int, ...]
    params: dict[str, bool | float] = dataclasses.field(hash=False)

    @property
    def state_dim(self) -> int:
        return sum(f.count for f in self.fields)

    def op_params(self, values: dict) -> list[float]:
        """The native ops' ``params``: the keyword arguments' values (flags as 0 or 1) in order."""
        return [float(values[name]) for name in self.params]


def _specs(games: dict[str, dict], params: dict) -> dict[str, MinAtarSpec]:
    specs = {}
    for name, g in games.items():
        fields = tuple(Field(*f) for f in g["fields"])
        for version, actions in (("v0", tuple(range(6))), ("v1", tuple(g["minimal_actions"]))):
            env_id = f"MinAtar/{name}-{version}"
            specs[env_id] = MinAtarSpec(id=env_id, game=name, channels=g["channels"], fields=fields,
                                        action_set=actions, params=dict(params))
    return specs


def fallback_games() -> dict[str, dict]:
    """The games as the fallback declares them, in the layout of ``_C.minatar_games()``."""
    last_action = ("last_action", 1, 0, 5)
    return {
        name: {
            "channels": g.channels,
            "fields": [last_action] + [dataclasses.astuple(f) for f in g.fields],
            "minimal_actions": list(g.minimal_actions),
            "reset_draws": g.reset_draws,
            "step_draws": g.step_draws,
        }
        for name, g in GAMES.items()
    }


FALLBACK_SPECS = _specs(fallback_games(), FALLBACK_PARAMS)
if _native._C is not None:
    MINATAR_SPECS = _specs(_native._C.minatar_games(), PARAMS)
else:
    MINATAR_SPECS = FALLBACK_SPECS

# The native MinAtar ids, -v0 and -v1 of each game in the registry's order.
MINATAR_ENVS = tuple(MINATAR_SPECS)
