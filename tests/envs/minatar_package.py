"""Drive the ``minatar`` package's gymnasium envs (the oracle) from fastrl's states and draws."""

from __future__ import annotations

import re

import numpy as np
import pytest

minatar_gym = pytest.importorskip("minatar.gym")


class FeedRandom:
    """Stands in for the package's numpy RandomState and returns the draws it is fed instead,
    mapped as fastrl maps its uniforms (csrc/core/minatar/game.h): rand() = u and
    randint(low, high) = low + floor(u * (high - low))."""

    def __init__(self):
        self.draws: list[float] = []
        self.used = 0

    def feed(self, draws) -> None:
        self.draws, self.used = [float(u) for u in draws], 0

    def _next(self) -> float:
        if self.used == len(self.draws):
            raise AssertionError(f"the package drew more than the {len(self.draws)} numbers fastrl made")
        self.used += 1
        return self.draws[self.used - 1]

    def rand(self, *size):
        if not size:
            return self._next()
        return np.array([self._next() for _ in range(int(np.prod(size)))]).reshape(size)

    def randint(self, low, high=None, size=None):
        if high is None:
            low, high = 0, low
        one = lambda: low + int(self._next() * (high - low))  # noqa: E731
        return one() if size is None else np.array([one() for _ in range(size)])


def package_env(env_id: str, sticky_action_prob: float, difficulty_ramping: bool):
    """The package's env of a fastrl MinAtar id, drawing from a FeedRandom (``env.feed``)."""
    game, version = re.fullmatch(r"MinAtar/(\w+)-(v[01])", env_id).groups()
    module = re.sub(r"(?<!^)([A-Z])", r"_\1", game).lower()  # SpaceInvaders -> space_invaders
    env = minatar_gym.BaseEnv(game=module, use_minimal_action_set=version == "v1",
                              sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
    env.feed = FeedRandom()
    env.game.random = env.game.env.random = env.feed
    return env


def _split(fields, row) -> dict[str, list[int]]:
    parts, col = {}, 0
    for f in fields:
        parts[f.name] = [int(x) for x in row[col : col + f.count]]
        col += f.count
    return parts


# Seaquest's lists: the elements of an entry in order, and which of them the package keeps as bools.
SEAQUEST_LISTS = {
    "f_bullets": ("x", "y", "right"), "e_bullets": ("x", "y", "right"), "e_fish": ("x", "y", "lr", "move_timer"),
    "e_subs": ("x", "y", "lr", "move_timer", "shot_timer"), "divers": ("x", "y", "lr", "move_timer"),
}
SEAQUEST_BOOLS = {"right", "lr"}


def _seaquest_list(parts, name) -> list[list]:
    elements = SEAQUEST_LISTS[name]
    return [[bool(parts[f"{name}_{e}"][i]) if e in SEAQUEST_BOOLS else parts[f"{name}_{e}"][i] for e in elements]
            for i in range(parts[f"{name}_count"][0])]


def inject(env, fields, row) -> None:
    """Sets the package env's state from a fastrl state row (``fields``: the spec's)."""
    game = env.game.env
    for name, values in _split(fields, row).items():
        if name == "last_action":
            env.game.last_action = values[0]
        elif name.endswith("_map"):  # Breakout's brick_map, SpaceInvaders' alien and bullet maps
            setattr(game, name, np.array(values, dtype=float).reshape(10, 10))
        elif name == "strike":
            game.strike = bool(values[0])
        elif name.startswith("car_"):  # Freeway: cars [x, y, timer, speed]
            parts = _split(fields, row)
            game.cars = [[parts["car_x"][i], i + 1, parts["car_timer"][i], parts["car_speed"][i]] for i in range(8)]
        elif name.startswith("entity_"):  # Asterix: entities None or [x, y, lr, is_gold]
            e = _split(fields, row)
            game.entities = [[e["entity_x"][i], i + 1, bool(e["entity_lr"][i]), bool(e["entity_gold"][i])]
                             if e["entity_present"][i] else None for i in range(8)]
        elif name.endswith("_count") and name[: -len("_count")] in SEAQUEST_LISTS:
            setattr(game, name[: -len("_count")], _seaquest_list(_split(fields, row), name[: -len("_count")]))
        elif any(name.startswith(f"{lst}_") for lst in SEAQUEST_LISTS):
            pass  # set with its list's count
        elif name in ("sub_or", "surface"):  # Seaquest's bools
            setattr(game, name, bool(values[0]))
        else:
            setattr(game, name, values[0])
    game.terminal = False


def extract(env, fields) -> list[int]:
    """The package env's state as a fastrl state row."""
    game, row = env.game.env, []
    cars = {"car_x": 0, "car_timer": 2, "car_speed": 3}
    entities = {"entity_x": 0, "entity_lr": 2, "entity_gold": 3}
    for f in fields:
        if f.name == "last_action":
            row.append(int(env.game.last_action))
        elif f.name.endswith("_map"):
            row += [int(x) for x in np.asarray(getattr(game, f.name)).flatten()]
        elif f.name in cars:
            row += [int(car[cars[f.name]]) for car in game.cars]
        elif f.name == "entity_present":
            row += [int(e is not None) for e in game.entities]
        elif f.name in entities:
            row += [0 if e is None else int(e[entities[f.name]]) for e in game.entities]
        elif f.name.endswith("_count") and f.name[: -len("_count")] in SEAQUEST_LISTS:
            row.append(len(getattr(game, f.name[: -len("_count")])))
        elif any(f.name.startswith(f"{lst}_") for lst in SEAQUEST_LISTS):
            lst = next(lst for lst in SEAQUEST_LISTS if f.name.startswith(f"{lst}_"))
            k = SEAQUEST_LISTS[lst].index(f.name[len(lst) + 1 :])
            entries = getattr(game, lst)
            row += [int(e[k]) for e in entries] + [0] * (f.count - len(entries))
        else:
            row.append(int(getattr(game, f.name)))
    return row
