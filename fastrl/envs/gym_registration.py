"""The native envs in gymnasium's registry as ``fastrl/<id>``, so that

    gymnasium.make_vec("fastrl/CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point")

returns fastrl's native vector env (``vector_entry_point`` is also make_vec's default mode for
these ids). ``make_vec``'s keyword arguments reach :func:`fastrl.envs.make` (``device``, ``dtype``,
``seed``, ``render_mode``, the env's own, ...). The single env (``gymnasium.make``, and make_vec's
"sync" and "async" modes) is gymnasium's own, whose semantics the native env reproduces.
"""

from __future__ import annotations

import functools

import gymnasium

NAMESPACE = "fastrl"


def gym_id(env_id: str) -> str:
    """The registered id of a native env: ``fastrl/<id>`` (a namespaced id's "/" becomes "-", as
    gymnasium's ids hold one namespace)."""
    return f"{NAMESPACE}/{env_id.replace('/', '-')}"


def make_native_vec(env_id: str, num_envs: int, **kwargs):
    """The ``vector_entry_point`` of ``gym_id(env_id)``."""
    from fastrl.envs import make  # fastrl.envs imports this module

    return make(env_id, num_envs, **kwargs)


def register(env_ids) -> None:
    """Registers ``gym_id(env_id)`` for each of ``env_ids`` that gymnasium knows (once)."""
    for env_id in env_ids:
        spec = gymnasium.registry.get(env_id)
        if spec is None or gym_id(env_id) in gymnasium.registry:
            continue
        gymnasium.register(
            gym_id(env_id),
            entry_point=spec.entry_point,
            vector_entry_point=functools.partial(make_native_vec, env_id),
            max_episode_steps=spec.max_episode_steps,
            reward_threshold=spec.reward_threshold,
            kwargs=dict(spec.kwargs),
        )
