"""MinAtar games: exact parity with the ``minatar`` package (the oracle), the registry, errors.

Parity: fastrl's envs and the package's gymnasium envs start from the same injected states (and
start states made to reach the rare branches: no bricks left, a strike, corners); every step
the package draws the numbers fastrl drew for that step (its sticky draw, the game's draws, the
reset's), and the observation, reward, termination and whole state must match exactly, over
long random-action rollouts with sticky actions, autoresets and truncation.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import resource
import zlib

import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from hypothesis import given, settings
from hypothesis import strategies as st

import fastrl.envs as fenvs
from fastrl import _native
from fastrl.envs.minatar import MINATAR_ENVS, MINATAR_SPECS
from fastrl.envs.minatar.games import GAMES
from fastrl.envs.minatar.render import PALETTES
from fastrl.envs.minatar.spec import FALLBACK_PARAMS, fallback_games
from fastrl.envs.rng import reset_uniforms, step_uniforms
from tests.conftest import backend as use_backend
from tests.conftest import here_and_on_baseline_kernels, requires_native
from tests.envs.minatar_package import SEAQUEST_LISTS, extract, inject, package_env
from tests.envs.test_vector import compiled_rollout_matches_eager


def breakout_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Breakout states (last action first) that reach its rare branches: no bricks or one
    brick left (the refill), bricks anywhere but the bottom row, a strike in progress, the ball
    next to the walls, the ceiling and the paddle."""
    rows = []
    for i in range(n):
        density = [0.0, 0.02, 0.3, 0.8][i % 4]
        bricks = (rng.random(100) < density).astype(int)
        bricks[90:] = 0
        ball_x, ball_y = int(rng.choice([0, 1, 8, 9, int(rng.integers(10))])), int(rng.integers(0, 9))
        pos = int(np.clip(ball_x + rng.integers(-1, 2), 0, 9))
        rows.append([int(rng.integers(6)), ball_x, ball_y, int(rng.integers(4)), pos, int(rng.integers(2)),
                     int(rng.integers(10)), int(rng.integers(9)), *bricks])
    return np.array(rows)


def freeway_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Freeway states near its edges: the chicken next to the top (a win and new speeds) or in a
    lane a car is entering, the time limit a few frames away, cars on the wrap-around columns."""
    rows = []
    for _ in range(n):
        speed = rng.integers(1, 6, 8) * rng.choice([-1, 1], 8)
        timer = rng.integers(0, np.abs(speed) + 1)
        rows.append([int(rng.integers(6)), int(rng.choice([1, 2, int(rng.integers(0, 10))])), int(rng.integers(4)),
                     int(rng.choice([int(rng.integers(0, 4)), 2500])), *rng.choice([0, 3, 4, 5, 9], 8),
                     *timer, *speed])
    return np.array(rows)


def asterix_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Asterix states at its edges: a spawn, a move and a ramp due (ramp_timer -1, either parity of
    ramp_index), every row taken (a spawn draws no slot), entities next to the player and at the
    grid's sides."""
    rows = []
    for i in range(n):
        spawn_speed, move_speed = int(rng.integers(1, 11)), int(rng.integers(1, 6))
        present = (rng.random(8) < [0.2, 0.5, 1.0, 0.8][i % 4]).astype(int)
        player_x, player_y = int(rng.integers(10)), int(rng.integers(1, 9))
        x = np.where(rng.random(8) < 0.5, rng.choice([0, 9], 8), np.clip(player_x + rng.integers(-1, 2, 8), 0, 9))
        lr, gold = rng.integers(0, 2, 8), (rng.random(8) < 0.4).astype(int)
        last_action, spawn_timer = int(rng.integers(6)), int(rng.integers(0, min(spawn_speed, 2) + 1))
        move_timer, ramp_timer = int(rng.integers(0, min(move_speed, 2) + 1)), int(rng.choice([-1, 0, 1, 100]))
        rows.append([last_action, player_x, player_y, spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer,
                     int(rng.integers(0, 9)), *present, *(x * present), *(lr * present), *(gold * present)])
    return np.array(rows)


def space_invaders_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """SpaceInvaders states at its edges: one alien left above a bullet (a new wave, a ramp), aliens
    at the sides and on the bottom rows (they step down, reach the cannon, wrap), bullets about to
    meet aliens and the cannon, every timer due."""
    rows = []
    for i in range(n):
        aliens = (rng.random(100) < [0.02, 0.1, 0.4, 0.05][i % 4]).astype(int)
        aliens[int(rng.integers(100))] = 1  # never empty
        f = (rng.random(100) < 0.1).astype(int)
        e = (rng.random(100) < 0.1).astype(int)
        pos, direction, move_timer = int(rng.integers(10)), int(rng.choice([-1, 1])), int(rng.integers(0, 3))
        if i % 4 == 0:  # one alien, with a bullet below it
            aliens[:] = 0
            col = int(rng.integers(10))
            aliens[30 + col] = f[40 + col] = 1
        elif i % 4 == 3:  # the only alien about to move onto the cannon, sideways or down at a side
            aliens[:], move_timer = 0, 0
            if rng.random() < 0.5:
                pos = int(rng.integers(1, 9))
                aliens[90 + pos - direction] = 1
            else:
                pos = 9 if direction > 0 else 0
                aliens[80 + pos] = 1
        rows.append([int(rng.integers(6)), pos, direction, int(rng.integers(6, 13)), move_timer,
                     int(rng.integers(0, 3)), int(rng.integers(0, 7)), int(rng.integers(0, 6)), *aliens, *f, *e])
    return np.array(rows)


# Seaquest's start states come from the package's own play (states an episode reaches), with a
# policy that surfaces often: n, l, u, r, d, f.
SEAQUEST_POLICY = [0.05, 0.1, 0.3, 0.1, 0.2, 0.25]


def seaquest_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seaquest states deep in a game, played by the package with its own numpy generator: each
    game starts with diver_count below 0 (the package's bug after surfacing with 6 divers: the sub
    can then surface without divers), bobs between the top two rows for a while (a surfacing and a
    ramp every other frame; long enough for an enemy a frame in one of six) and then plays at
    random. Then one in six surfaces with 6 divers on the next 'u' (the oxygen reward and the bug),
    a diver on its cell;
    one is about to run out of oxygen or surface with no diver (the episode ends); one has an
    enemy sub about to be shot as its shot is due (it still fires); one a friendly bullet about to
    enter a cell holding a fish and an enemy sub, or two fish (the first fish in the list is hit);
    one surfaces with 6 divers and oxygen -1 (a reward of -1: Python's floor division)."""
    fields = MINATAR_SPECS["MinAtar/Seaquest-v0"].fields
    rows = []
    while len(rows) < n:
        kind = len(rows) % 6
        p = package_env("MinAtar/Seaquest-v0", 0.0, True)
        p.game.random = p.game.env.random = np.random.RandomState(int(rng.integers(2**31)))
        p.reset()
        game = p.game.env
        game.diver_count = -int(rng.integers(1, 40))
        bob = int(rng.integers(40, 80) if kind == 0 else rng.integers(0, 60))  # 38 frames: an enemy a frame
        ended = False
        for frame in range(int(rng.integers(bob + 10, bob + 200))):
            a = (2 if game.sub_y else 4) if frame < bob else int(rng.choice(6, p=SEAQUEST_POLICY))
            if p.step(a)[2]:
                ended = True
                break
        if ended:
            continue
        # A row of its own for the set-ups below: no enemy in it, not the sub's.
        y = int(rng.choice([r for r in range(1, 9) if r != game.sub_y]))
        lr, x = bool(rng.integers(2)), int(rng.integers(2, 8))
        step = 1 if lr else -1
        if kind in (3, 4):
            game.e_fish = [e for e in game.e_fish if e[1] != y]
            game.e_subs = [e for e in game.e_subs if e[1] != y]
        if kind in (1, 5):
            game.diver_count, game.sub_y, game.surface = 6, 1 - kind // 5, False
            game.oxygen = -1 if kind == 5 else game.oxygen
            if kind == 1:  # a diver on the sub's cell stays: no room for a seventh
                game.divers = [d for d in game.divers if d[1] != 1][:1] + [[game.sub_x, 1, lr, 3]]
        elif kind == 2:
            game.diver_count, game.oxygen = int(rng.choice([0, 1])), int(rng.choice([0, 1, 2, 200]))
            game.sub_y = int(rng.integers(0, 3))
            game.surface = game.sub_y == 0
        elif kind == 3:
            game.e_subs.append([x, y, lr, 0, 0])
            game.f_bullets = [[x + 2 * step, y, not lr]]  # moves to where the sub moves
        elif kind == 4:
            timers = rng.permutation(np.arange(1, game.move_speed + 1))[:2].tolist()
            game.e_fish += [[x, y, lr, timers[0]]]
            if rng.random() < 0.5:
                game.e_subs.append([x, y, lr, timers[1], 3])
            else:
                game.e_fish.append([x, y, lr, timers[1]])
            game.f_bullets = [[x + step, y, not lr]]  # moves onto them
        rows.append(extract(p, fields))
    return np.array(rows)


@dataclasses.dataclass(frozen=True)
class GameCase:
    start_states: object  # (rng, n) -> int [n, 1 + S]
    parity_limit: int  # max_episode_steps of the parity runs: short enough that truncation happens


GAME_CASES = {
    "Breakout": GameCase(breakout_starts, parity_limit=40),
    "Freeway": GameCase(freeway_starts, parity_limit=40),
    "Asterix": GameCase(asterix_starts, parity_limit=40),
    "SpaceInvaders": GameCase(space_invaders_starts, parity_limit=40),
    "Seaquest": GameCase(seaquest_starts, parity_limit=40),
}


def test_every_game_has_a_case():
    assert set(GAME_CASES) == set(GAMES)


def step_both(env, pkgs, actions, pending, counts, limit, watch=None) -> None:
    """One step of fastrl's ``env`` and of the package's envs ``pkgs`` (each drawing the numbers
    fastrl drew for it) with ``actions``; the observation, reward, termination, truncation (at
    ``limit``) and whole state must be equal. ``pending[i]``: the package's env i resets on this
    step (NEXT_STEP); ``counts`` tallies what the steps did; ``watch(before, env, reward,
    terminated)`` sees each package step's game before it and the package's env after it."""
    spec = env.spec_
    game, n, same_step = GAMES[spec.game], env.num_envs, env._same_step
    before = env.state_dict()
    envs = torch.arange(n)
    draws = torch.stack(step_uniforms(before["seeds"], envs, before["resets"], before["elapsed"],
                                      1 + game.step_draws), 1)
    resets = torch.stack([*reset_uniforms(before["seeds"], envs, before["resets"], game.reset_draws),
                          torch.zeros(n, dtype=torch.float64)], 1)[:, : game.reset_draws]
    obs, reward, term, trunc, info = env.step(torch.tensor(actions))
    state = env.get_state()
    for i, p in enumerate(pkgs):
        if pending[i]:  # the reset step
            p.feed.feed(resets[i].tolist())
            p_obs, _ = p.reset()
            assert (reward[i], term[i], trunc[i]) == (0, False, False)
            pending[i] = False
        else:
            p.feed.feed(draws[i].tolist())
            last = p.game.last_action
            old = copy.deepcopy(p.game.env) if watch else None
            p_obs, p_reward, p_term, _, _ = p.step(int(actions[i]))
            counts["sticky"] += p.game.last_action == last != spec.action_set[actions[i]]
            assert reward[i].item() == p_reward and term[i].item() == p_term, i
            assert trunc[i].item() == (before["elapsed"][i] + 1 >= limit)  # as TimeLimit
            if watch:
                watch(old, p, p_reward, p_term)
            counts["terminated"] += p_term
            counts["truncated"] += trunc[i].item()
            counts["reward"] += p_reward
            done = bool(term[i] or trunc[i])
            if same_step:
                np.testing.assert_array_equal(info["final_obs"][i].numpy(), p_obs)
                if done:
                    p.feed.feed(resets[i].tolist())
                    p_obs, _ = p.reset()
            else:
                pending[i] = done
        np.testing.assert_array_equal(obs[i].numpy(), p_obs)
        assert state[i].tolist() == extract(p, spec.fields), i


@pytest.mark.parametrize("same_step", [False, True], ids=["next_step", "same_step"])
@pytest.mark.parametrize("env_id", MINATAR_ENVS)
def test_parity_with_package(env_id, same_step, backend):
    """Whole trajectories equal the package's, every step, from injected start states."""
    spec, n, steps = MINATAR_SPECS[env_id], 8, 400
    # Sticky actions often, so that they repeat and change actions; ramping on and off.
    sticky, ramping = 0.3, not same_step
    case = GAME_CASES[spec.game]
    rng = np.random.default_rng([zlib.crc32(env_id.encode()), same_step])
    env = fenvs.make(env_id, n, seed=11, autoreset_mode="same_step" if same_step else "next_step",
                     sticky_action_prob=sticky, difficulty_ramping=ramping, max_episode_steps=case.parity_limit)
    env.reset()
    starts = case.start_states(rng, n)
    elapsed = rng.integers(case.parity_limit - 8, case.parity_limit, n)  # truncation soon
    env.set_state(torch.tensor(starts), torch.tensor(elapsed))
    pkgs = [package_env(env_id, sticky, ramping) for _ in range(n)]
    for p, row in zip(pkgs, starts):
        inject(p, spec.fields, row)
    counts = dict(terminated=0, truncated=0, sticky=0, reward=0)
    pending = [False] * n  # NEXT_STEP: the package resets on this step
    for _ in range(steps):
        step_both(env, pkgs, rng.integers(0, len(spec.action_set), n), pending, counts, case.parity_limit)
    assert all(v > 0 for v in counts.values()), counts


def test_seaquest_long_rollouts_reach_its_rare_branches(backend):
    """Seaquest's rare branches need games deep in (a ramped difficulty, many enemies, divers on
    board): rounds of 150 steps from fresh deep start states (seaquest_starts), with a policy that
    surfaces and fires often, compared with the package every step as in test_parity_with_package;
    the rounds must surface with 6 divers (the oxygen reward and the diver_count bug) and reach
    the other rare events."""
    spec, n = MINATAR_SPECS["MinAtar/Seaquest-v0"], 16
    rng = np.random.default_rng(16)
    env = fenvs.make(spec.id, n, seed=5, sticky_action_prob=0.1, max_episode_steps=1000)
    env.reset()
    seen = dict.fromkeys(["full_surface", "bug_surface", "no_diver_end", "oxygen_end", "ramp", "spawn_blocked",
                          "sub_fires", "enemy_shot", "pick_up", "enemies_15", "e_bullets_4"], 0)

    def watch(old, p, reward, terminal):
        new, enemies = p.game.env, old.e_subs + old.e_fish
        seen["full_surface"] += old.diver_count == 6 and new.diver_count == -1
        seen["bug_surface"] += old.diver_count < 0 and not old.surface and new.surface  # the episode goes on
        seen["no_diver_end"] += new.diver_count == 0 and not old.surface and new.sub_y == 0 and terminal
        seen["oxygen_end"] += old.oxygen <= 0 and terminal
        seen["ramp"] += new.ramp_index > old.ramp_index
        if old.e_spawn_timer == 0:  # the draws after the sticky one: lr, is_sub, y
            lr, y = p.feed.draws[1] < 1 / 2, int(1 + p.feed.draws[3] * 8)
            seen["spawn_blocked"] += any(z[1] == y and z[2] != lr for z in enemies)
        seen["sub_fires"] += any(s[4] == 0 for s in old.e_subs)
        seen["enemy_shot"] += reward == 1 and old.diver_count != 6
        seen["pick_up"] += new.diver_count > old.diver_count
        seen["enemies_15"] += len(enemies) >= 15
        seen["e_bullets_4"] += len(old.e_bullets) >= 4

    counts = dict(terminated=0, truncated=0, sticky=0, reward=0)
    for _ in range(6):
        starts = seaquest_starts(rng, n)
        env.set_state(torch.tensor(starts))
        pkgs = [package_env(spec.id, 0.1, True) for _ in range(n)]
        for p, row in zip(pkgs, starts):
            inject(p, spec.fields, row)
        pending = [False] * n
        for _ in range(150):
            step_both(env, pkgs, rng.choice(6, n, p=SEAQUEST_POLICY), pending, counts, 1000, watch)
    assert seen["full_surface"] >= 6 and all(v > 0 for v in seen.values()), seen


def test_seaquest_full_list_drops_what_it_cannot_hold(backend):
    """A list at its capacity (only a state set by hand: no game fills one) drops an append: here
    3 friendly bullets and a shot, 3 divers and a diver spawn. Worked by hand: the bullets and
    divers move, no new one appears, nothing else is written."""
    env = fenvs.make("MinAtar/Seaquest-v0", 1, seed=0, sticky_action_prob=0.0)
    env.reset()
    spec = env.spec_
    offset, col = {}, 0
    for f in spec.fields:
        offset[f.name] = col
        col += f.count
    row = env.get_state()[0].tolist()  # the start: sub at (5, 0) facing left, oxygen 200
    for name, values in (("f_bullets_x", [2, 3, 4]), ("f_bullets_y", [5, 6, 7]), ("f_bullets_right", [1, 1, 1]),
                         ("divers_x", [0, 1, 2]), ("divers_y", [2, 3, 4]), ("divers_lr", [1, 1, 1]),
                         ("divers_move_timer", [0, 0, 0])):
        row[offset[name] : offset[name] + 3] = values
    row[offset["f_bullets_count"]] = row[offset["divers_count"]] = 3
    row[offset["d_spawn_timer"]] = 0
    env.set_state(torch.tensor([row]))
    obs, reward, term, _, _ = env.step(torch.tensor([5]))  # f: a fourth bullet would start at (5, 0)
    after = env.get_state()[0].tolist()
    assert (reward.item(), term.item()) == (0, False)
    assert after[offset["f_bullets_count"]] == after[offset["divers_count"]] == 3
    assert after[offset["f_bullets_x"] : offset["f_bullets_x"] + 3] == [3, 4, 5]
    assert after[offset["divers_x"] : offset["divers_x"] + 3] == [1, 2, 3]
    assert after[offset["divers_move_timer"] : offset["divers_move_timer"] + 3] == [5, 5, 5]
    assert after[offset["shot_timer"]] == 4 and after[offset["d_spawn_timer"]] == 29
    assert obs[0, :, :, 2].nonzero().tolist() == [[5, 3], [6, 4], [7, 5]]  # no bullet on row 0
    assert obs[0, :, :, 9].nonzero().tolist() == [[2, 1], [3, 2], [4, 3]]

@requires_native
def test_registry_matches_fallback():
    """The fallback declares what the C++ headers do (fields, channels, actions, draws, params)."""
    assert _native._C.minatar_games() == fallback_games()
    assert dict(_native._C.minatar_params()) == FALLBACK_PARAMS


def test_spaces_and_ids_are_the_packages():
    for env_id in MINATAR_ENVS:
        env = fenvs.make(env_id, 3)
        p = package_env(env_id, 0.1, True)
        assert env.single_observation_space == p.observation_space
        assert env.single_action_space == p.action_space
        assert env.observation_space.shape == (3, *p.observation_space.shape)
        assert MINATAR_SPECS[env_id].action_set == tuple(p.action_set)
        assert env.max_episode_steps is None


def test_same_seed_same_trajectory(backend):
    """Seeded envs repeat; different seeds differ; the last action survives a reset."""
    def run(seed):
        env = fenvs.make("MinAtar/Breakout-v0", 16, seed=seed)
        out = [env.reset()[0]]
        g = torch.Generator().manual_seed(0)
        for _ in range(100):
            out.append(env.step(torch.randint(0, 6, (16,), generator=g))[0])
        last = env.get_state()[:, 0].clone()
        env.reset()
        assert torch.equal(env.get_state()[:, 0], last)
        return torch.stack(out)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


@requires_native
@pytest.mark.parametrize("same_step", [False, True])
def test_native_equals_fallback(same_step):
    """The kernels and the fallback give the same steps, statistics and states, bit for bit."""
    outs = {}
    for name in ("native", "torch"):
        _native.set_backend(name)
        try:
            env = fenvs.make("MinAtar/Breakout-v1", 64, seed=3, dtype=torch.float64,
                             autoreset_mode="same_step" if same_step else "next_step", max_episode_steps=50)
            g = torch.Generator().manual_seed(1)
            steps = [env.reset()[0]]
            for _ in range(150):
                obs, r, te, tr, info = env.step(torch.randint(0, 3, (64,), generator=g))
                steps += [obs, r, te, tr, info["episode"]["r"], info["episode"]["l"], env.get_state()]
                if same_step:
                    steps.append(info["final_obs"])
            outs[name] = steps
        finally:
            _native.set_backend("auto")
    for a, b in zip(outs["native"], outs["torch"], strict=True):
        assert torch.equal(a, b)


def minatar_rollout_digests() -> list[tuple[str, str]]:
    """Digests of every output and state of native rollouts of every game: both autoreset modes,
    both return dtypes, 77 envs (two chunks of cpu/minatar_kernel.h, the second's 13 not whole
    vectors of 8) and 5, episodes cut at 40 steps."""
    digests = []
    for env_id in (i for i in MINATAR_ENVS if i.endswith("-v0")):
        for dtype in (torch.float32, torch.float64):
            for mode in ("next_step", "same_step"):
                for n in (77, 5):
                    env = fenvs.make(env_id, n, seed=n, dtype=dtype, autoreset_mode=mode, max_episode_steps=40)
                    g = torch.Generator().manual_seed(n)
                    outs = [env.reset()[0]]
                    for _ in range(120):
                        obs, r, te, tr, info = env.step(torch.randint(0, 6, (n,), generator=g))
                        outs += [obs, r, te, tr, info["episode"]["r"], info["episode"]["l"], env.get_state()]
                        outs += [info["final_obs"]] if mode == "same_step" else []
                    data = b"".join(x.numpy().tobytes() for x in outs)
                    digests.append((f"{env_id} {dtype} {mode} n={n}", hashlib.sha256(data).hexdigest()))
    return digests


@requires_native
def test_baseline_cpu_build_matches_avx2(tmp_path):
    """The AVX2 build of the step (its Philox words 8 envs at a time) and the baseline build
    (ATEN_CPU_CAPABILITY=default: what a CPU without AVX2 runs) give bit-identical rollouts."""
    got, baseline = here_and_on_baseline_kernels(__name__, "minatar_rollout_digests", tmp_path)
    differ = [what for (what, a), (_, b) in zip(got, baseline) if a != b]
    assert not differ, f"{len(differ)} rollouts differ, first: {differ[:5]}"


@pytest.mark.cuda
@requires_native
@pytest.mark.parametrize("env_id", [i for i in MINATAR_ENVS if i.endswith("-v0")])
def test_cuda_equals_cpu(env_id):
    """Same seed, same trajectories on the GPU and the CPU, for every game."""
    outs = {}
    for device in ("cpu", "cuda"):
        env = fenvs.make(env_id, 300, device=device, seed=9, max_episode_steps=70)
        g = torch.Generator().manual_seed(2)
        steps = [env.reset()[0].cpu()]
        for _ in range(200):
            obs, r, te, tr, info = env.step(torch.randint(0, 6, (300,), generator=g).to(device))
            steps += [t.cpu() for t in (obs, r, te, tr, info["episode"]["r"], env.get_state())]
        outs[device] = steps
    for a, b in zip(outs["cpu"], outs["cuda"], strict=True):
        assert torch.equal(a, b)


def test_state_dict_resumes_exactly(backend):
    env = fenvs.make("MinAtar/Breakout-v1", 8, seed=4)
    env.reset()
    acts = torch.randint(0, 3, (80, 8), generator=torch.Generator().manual_seed(0))
    for a in acts[:40]:
        env.step(a)
    saved = env.state_dict()
    first = [env.step(a)[0] for a in acts[40:]]
    other = fenvs.make("MinAtar/Breakout-v1", 8)
    other.load_state_dict(saved)
    assert all(torch.equal(x, other.step(a)[0]) for x, a in zip(first, acts[40:]))


# -- bad input ---------------------------------------------------------------------------------

def test_bad_ids_and_keywords():
    with pytest.raises(ValueError, match="env_id 'MinAtar/Pong-v1' is not a MinAtar game"):
        fenvs.make("MinAtar/Pong-v1", 2)
    with pytest.raises(ValueError, match="env_id 'MinAtar/Breakout-v2'"):
        fenvs.make("MinAtar/Breakout-v2", 2)
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sticky_action_prob must be"):
            fenvs.make("MinAtar/Breakout-v1", 2, sticky_action_prob=p)
    with pytest.raises(TypeError, match="sticky_action_prob must be a real number"):
        fenvs.make("MinAtar/Breakout-v1", 2, sticky_action_prob="0.1")
    with pytest.raises(TypeError, match="difficulty_ramping must be a bool"):
        fenvs.make("MinAtar/Breakout-v1", 2, difficulty_ramping=1)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['ramping'\]"):
        fenvs.make("MinAtar/Breakout-v1", 2, ramping=True)
    with pytest.raises(ValueError, match="max_episode_steps must be >= 1"):
        fenvs.make("MinAtar/Breakout-v1", 2, max_episode_steps=0)


def test_bad_actions(backend):
    env = fenvs.make("MinAtar/Breakout-v1", 3, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\]"):
        env.step(torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\]"):
        env.step(torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"actions must have shape \(3,\)"):
        env.step(torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="actions must be an integer tensor"):
        env.step(torch.tensor([0.0, 1.0, 1.0]))
    v0 = fenvs.make("MinAtar/Breakout-v0", 3, seed=0)
    v0.reset()
    v0.step(torch.tensor([5, 4, 2]))  # six actions in -v0
    with pytest.raises(ValueError, match=r"actions must be in \[0, 5\]"):
        v0.step(torch.tensor([6, 0, 0]))


def test_bad_states():
    env = fenvs.make("MinAtar/Breakout-v1", 2, seed=0)
    assert repr(env) == "MinAtarVectorEnv(MinAtar/Breakout-v1, num_envs=2, device=cpu, dtype=torch.float32)"
    with pytest.raises(ResetNeeded):
        env.set_state(torch.zeros(2, 108, dtype=torch.int32))
    env.reset()
    good = env.get_state()
    bad = good.clone()
    bad[1, 3] = 4  # ball_dir
    with pytest.raises(ValueError, match=r"Breakout's ball_dir must be in \[0, 3\]"):
        env.set_state(bad)
    bad = good.clone()
    bad[0, 2] = 9  # ball_y on the bottom row: the episode has ended
    with pytest.raises(ValueError, match="ball_y must be below 9"):
        env.set_state(bad)
    with pytest.raises(ValueError, match=r"state must have shape \(2, 108\)"):
        env.set_state(good[:, :-1])
    with pytest.raises(TypeError, match="state must hold integers"):
        env.set_state(good.float())
    env.set_state(good)


@requires_native
@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_compiled_step_matches_eager(mode):
    """Under torch.compile step runs torch.ops.fastrl.minatar_step (its fake kernel traces it in
    one graph): same outputs and state as the eager binding. Also an opcheck of the op."""
    def rollout(env, actions):
        outs = []
        for a in actions:
            obs, reward, term, trunc, info = env.step(a)
            outs.append(torch.cat([obs.flatten().float(), reward, term.float(), info["episode"]["r"]]))
        return torch.stack(outs)

    g = torch.Generator().manual_seed(0)
    actions = [torch.randint(0, 3, (6,), generator=g) for _ in range(40)]
    make = lambda: fenvs.make("MinAtar/Breakout-v1", 6, seed=1, autoreset_mode=mode, max_episode_steps=25)
    compiled = compiled_rollout_matches_eager(make, rollout, actions)
    t = compiled._op_tensors()
    torch.library.opcheck(torch.ops.fastrl.minatar_step, (compiled.spec_.id, *[x.clone() for x in t],
                          actions[0], compiled._param_list, 25, mode == "same_step"))
    torch.library.opcheck(torch.ops.fastrl.minatar_reset, (compiled.spec_.id, *[x.clone() for x in t],
                          compiled._param_list))


def test_unchecked_out_of_range_action_is_the_noop(torch_backend):
    """validate=False (a GPU's default) skips the host-side range check; an action out of range
    is then the no-op on every backend (core::minatar::step_env), not a read out of bounds."""
    envs = [fenvs.make("MinAtar/Breakout-v1", 4, seed=2, sticky_action_prob=0.0, validate=False) for _ in range(2)]
    for env in envs:
        env.reset()
    for _ in range(10):
        a = envs[0].step(torch.tensor([7, -1, 3, 100]))
        b = envs[1].step(torch.zeros(4, dtype=torch.int64))
        assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4]))


@pytest.mark.cuda
@requires_native
def test_cuda_unchecked_out_of_range_action_is_the_noop():
    envs = [fenvs.make("MinAtar/Breakout-v1", 4, device="cuda", seed=2, sticky_action_prob=0.0) for _ in range(2)]
    for env in envs:
        env.reset()
    for _ in range(10):
        a = envs[0].step(torch.tensor([7, -1, 3, 100], device="cuda"))
        b = envs[1].step(torch.zeros(4, dtype=torch.int64, device="cuda"))
        assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4]))


def test_copies_and_bad_state_dicts(backend):
    env = fenvs.make("MinAtar/SpaceInvaders-v1", 3, seed=1)
    env.reset()
    twin = copy.deepcopy(env)
    a = torch.tensor([3, 1, 0])
    for _ in range(20):
        assert torch.equal(env.step(a)[0], twin.step(a)[0])
    bad = env.state_dict()
    bad["state"] = bad["state"].clone()
    bad["state"][0, 2] = 2  # alien_dir
    with pytest.raises(ValueError, match=r"state_dict\['state'\]: SpaceInvaders's alien_dir must be in \[-1, 1\]"):
        twin.load_state_dict(bad)
    bad["state"] = bad["state"].float()
    with pytest.raises(ValueError, match=r"state_dict\['state'\] is torch.float32"):
        twin.load_state_dict(bad)


def canonical(game: str, row: list[int]) -> list[int]:
    """A state row within its fields' bounds made steppable (and, for Asterix, canonical)."""
    spec = next(s for s in MINATAR_SPECS.values() if s.game == game)
    offset = {}
    col = 0
    for f in spec.fields:
        offset[f.name] = col
        col += f.count
    row = list(row)
    if game == "Breakout":
        row[offset["ball_y"]] = min(row[offset["ball_y"]], 8)
        b = offset["brick_map"]
        row[b + 90 : b + 100] = [0] * 10
    elif game == "Freeway":
        row[offset["terminate_timer"]] = max(row[offset["terminate_timer"]], 0)
        s = offset["car_speed"]
        row[s : s + 8] = [v or 1 for v in row[s : s + 8]]
    elif game == "Asterix":
        p = offset["entity_present"]
        for name in ("entity_x", "entity_lr", "entity_gold"):
            o = offset[name]
            row[o : o + 8] = [v * row[p + i] for i, v in enumerate(row[o : o + 8])]
    elif game == "SpaceInvaders":
        row[offset["alien_dir"]] = row[offset["alien_dir"]] or 1
        row[offset["alien_map"] + 37] = 1  # never an empty wave
    elif game == "Seaquest":
        x, facing = offset["sub_x"], offset["sub_or"]
        row[facing] = {0: 0, 9: 1}.get(row[x], row[facing])  # the sub's back on the grid
        # Lists: a few distinct entries (as the package's lists hold, see seaquest.h), room for
        # what a step appends, zeros past the count.
        for name, elements in SEAQUEST_LISTS.items():
            cap = next(f.count for f in spec.fields if f.name == f"{name}_{elements[0]}")
            starts = [offset[f"{name}_{e}"] for e in elements]
            entries = [tuple(row[o + i] for o in starts) for i in range(row[offset[f"{name}_count"]] % 3)]
            entries = list(dict.fromkeys(entries))  # distinct, in order
            row[offset[f"{name}_count"]] = len(entries)
            for k, o in enumerate(starts):
                row[o : o + cap] = [e[k] for e in entries] + [0] * (cap - len(entries))
    return row


@pytest.mark.parametrize("env_id", MINATAR_ENVS)
@settings(max_examples=25)
@given(data=st.data())
def test_any_state_steps_like_the_package(env_id, data):
    """From any steppable state, one step (with any action, sticky probability, ramping and seed)
    gives the package's observation, reward, termination and state, on both backends."""
    spec = MINATAR_SPECS[env_id]
    row = []
    for f in spec.fields:
        # Scalars (timers, speeds, positions) often at their bounds: a timer due, a ramp due.
        value = st.integers(f.low, f.high)
        if f.count == 1:
            value = st.one_of(st.sampled_from([f.low, f.low + 1, f.high]), value)
        row += data.draw(st.lists(value, min_size=f.count, max_size=f.count), label=f.name)
    row = canonical(spec.game, row)
    action = data.draw(st.integers(0, len(spec.action_set) - 1), label="action")
    sticky = data.draw(st.sampled_from([0.0, 0.5, 1.0]), label="sticky_action_prob")
    ramping = data.draw(st.booleans(), label="difficulty_ramping")
    seed = data.draw(st.integers(0, 2**63 - 1), label="seed")
    elapsed = data.draw(st.integers(0, 5), label="elapsed")
    game = GAMES[spec.game]
    p = package_env(env_id, sticky, ramping)
    inject(p, spec.fields, row)
    results = {}
    for name in ["torch"] + (["native"] if _native._C is not None else []):
        with use_backend(name):
            env = fenvs.make(env_id, 1, seed=seed, autoreset_mode="next_step", sticky_action_prob=sticky,
                             difficulty_ramping=ramping)
            env.reset()
            env.set_state(torch.tensor([row]), elapsed)
            obs, reward, term, _, _ = env.step(torch.tensor([action]))
            results[name] = (obs[0].numpy(), reward.item(), term.item(), env.get_state()[0].tolist())
    d = env.state_dict()
    p.feed.feed(step_uniforms(d["seeds"], torch.arange(1), d["resets"], torch.tensor([elapsed]), 1 + game.step_draws))
    p_obs, p_reward, p_term, _, _ = p.step(action)
    for obs, reward, term, state in results.values():
        np.testing.assert_array_equal(obs, p_obs)
        assert (reward, term, state) == (p_reward, p_term, extract(p, spec.fields))


def test_reset_mask_and_close_work_as_on_the_classic_envs(backend):
    """The front end's partial reset and close() on the MinAtar layout (state [N, 1 + S], obs
    [N, 10, 10, C]): the unmasked envs keep state, counters and observations."""
    from gymnasium.error import ClosedEnvironmentError

    env = fenvs.make("MinAtar/Breakout-v1", 4, seed=3)
    env.reset()
    for _ in range(5):
        obs, *_ = env.step(torch.ones(4, dtype=torch.int64))
    state = env.get_state().clone()
    mask = torch.tensor([False, True, False, False])
    new_obs, _ = env.reset(options={"reset_mask": mask})
    assert torch.equal(env.get_state()[~mask], state[~mask]) and torch.equal(new_obs[~mask], obs[~mask])
    # After loading a state the other envs' observations come from the state itself.
    copy_env = fenvs.make("MinAtar/Breakout-v1", 4, seed=3)
    copy_env.load_state_dict(env.state_dict())
    again, _ = copy_env.reset(options={"reset_mask": mask})
    assert torch.equal(again[~mask], new_obs[~mask])
    env.close()
    with pytest.raises(ClosedEnvironmentError):
        env.step(torch.zeros(4, dtype=torch.int64))


# -- rendering ---------------------------------------------------------------------------------

needs_seaborn = pytest.mark.skipif(importlib.util.find_spec("seaborn") is None,
                                   reason="seaborn (the package's palette) is not installed")


@needs_seaborn
def test_palettes_are_seaborns():
    """The stored palettes are the package's: black, then seaborn's cubehelix of C colours."""
    import seaborn

    assert set(PALETTES) == {g.channels for g in GAMES.values()}
    for channels, palette in PALETTES.items():
        assert palette == ((0.0, 0.0, 0.0), *map(tuple, seaborn.color_palette("cubehelix", channels)))


def test_breakout_reset_frame_by_hand(backend):
    """Breakout's first frame, worked out from its state: bricks (channel 3: the palette's last
    colour) on rows 1..3, where the ball and its trail are too (the highest channel wins), the
    paddle (channel 0) at column 4 of the bottom row, the rest black."""
    env = fenvs.make("MinAtar/Breakout-v1", 2, seed=0, render_mode="rgb_array")
    env.reset()
    for frame in env.render():
        expected = np.zeros((10, 10, 3), dtype=np.uint8)
        expected[1:4] = (193, 202, 243)  # round(255 * (0.7587, 0.7922, 0.9544))
        expected[9, 4] = (22, 61, 78)  # round(255 * (0.0861, 0.2382, 0.3056))
        assert frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, expected)


@needs_seaborn
@pytest.mark.parametrize("env_id", [i for i in MINATAR_ENVS if i.endswith("-v1")])
def test_frames_are_the_packages(env_id, backend):
    """Each env's frame is the package's render() of the same state, as uint8 (round(255 * c))."""
    spec, n = MINATAR_SPECS[env_id], 6
    case = GAME_CASES[spec.game]
    rng = np.random.default_rng(1)
    env = fenvs.make(env_id, n, seed=2, render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["rgb_array"] and env.render_mode == "rgb_array"
    env.reset()
    env.set_state(torch.tensor(case.start_states(rng, n)))
    for _ in range(3):
        env.step(torch.tensor(rng.integers(0, len(spec.action_set), n)))
    frames, states = env.render(), env.get_state()
    assert len(frames) == n
    for frame, row in zip(frames, states.tolist()):
        p = package_env(env_id, 0.1, True)
        p.render_mode = "rgb_array"
        inject(p, spec.fields, row)
        np.testing.assert_array_equal(frame, np.round(255 * p.render()).astype(np.uint8))
    assert len({f.tobytes() for f in frames}) > 1  # the frames follow each env's state


def test_render_without_a_mode_and_bad_modes():
    env = fenvs.make("MinAtar/Seaquest-v1", 2, seed=0)
    env.reset()
    with pytest.warns(UserWarning, match="has no render_mode"):
        assert env.render() is None
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array' for MinAtar/Seaquest-v1"):
        fenvs.make("MinAtar/Seaquest-v1", 2, render_mode="human")


@requires_native
def test_large_observations_are_recycled_never_shared():
    """Large CPU step outputs (csrc/ops/output_pool.h) reuse the buffer of an observation nobody
    holds any more (a fresh allocation each step page-faulted it in anew), and never one a
    caller still holds: a held observation keeps its values while later steps run."""
    n = 1024  # 1 MB of Seaquest observations a step: above the pool's 128 KB
    env = fenvs.make("MinAtar/Seaquest-v1", n, seed=0)
    env.reset(seed=0)
    actions = torch.randint(0, 6, (8, n), generator=torch.Generator().manual_seed(0))
    held = env.step(actions[0])[0]
    kept = held.clone()
    later = [env.step(a)[0] for a in actions[1:4]]  # held by us: no two share a buffer
    assert len({t.data_ptr() for t in [held, *later]}) == 4
    assert torch.equal(held, kept)
    freed = later[0].data_ptr()
    del later[0]  # nobody holds it now (the env holds only the last one)
    assert env.step(actions[4])[0].data_ptr() == freed
    assert torch.equal(held, kept)
    # Recycled buffers are mapped already: a fresh 1 MB allocation page-faults ~115 pages in here.
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for step in range(20):
        env.step(actions[step % 8])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults < 20 * 32
