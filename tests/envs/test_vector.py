"""VectorEnv semantics: autoreset modes vs gymnasium's SyncVectorEnv, seeding, episode
statistics, bad input, the ops' registration (opcheck), and the gymnasium fallback."""

import copy
import pickle

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import fastrl.envs as fenvs
from fastrl import _native
from tests.conftest import here_and_on_baseline_kernels, requires_native
from tests.envs.helpers import gym_state, inject, sample_actions, to_torch_actions


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_autoreset_matches_sync_vector_env(mode, backend):
    """CartPole with short episodes: flags, rewards, obs, final_obs and which step resets agree
    with SyncVectorEnv; after each reset gymnasium's env is given fastrl's reset state."""
    n, max_steps = 3, 8
    gmode = AutoresetMode.NEXT_STEP if mode == "next_step" else AutoresetMode.SAME_STEP
    genv = SyncVectorEnv([lambda: gymnasium.make("CartPole-v1", max_episode_steps=max_steps)] * n,
                         autoreset_mode=gmode)
    genv.reset(seed=0)
    env = fenvs.make("CartPole-v1", n, dtype=torch.float64, seed=0, autoreset_mode=mode,
                     max_episode_steps=max_steps)
    assert env.metadata["autoreset_mode"] == gmode
    obs, _ = env.reset()
    for i, e in enumerate(genv.envs):
        inject(e, "CartPole-v1", obs[i].tolist(), 0)
    rng = np.random.default_rng(1)
    resets_seen = 0
    for _ in range(60):
        actions = sample_actions("CartPole-v1", rng, n)
        obs, reward, term, trunc, info = env.step(to_torch_actions(actions, env))
        g_obs, g_reward, g_term, g_trunc, g_info = genv.step(actions)
        np.testing.assert_array_equal(term.numpy(), g_term)
        np.testing.assert_array_equal(trunc.numpy(), g_trunc)
        np.testing.assert_array_equal(reward.numpy(), g_reward)
        done = g_term | g_trunc
        # rows that just reset hold different random initial states: compare the others
        reset_rows = done if mode == "same_step" else (g_reward == 0)
        np.testing.assert_array_equal(obs.float().numpy()[~reset_rows], g_obs[~reset_rows])
        if mode == "same_step":
            np.testing.assert_array_equal(info["_final_obs"].numpy(), g_info.get("_final_obs", np.zeros(n, bool)))
            for i in np.flatnonzero(done):
                np.testing.assert_array_equal(info["final_obs"][i].float().numpy(), g_info["final_obs"][i])
        for i in np.flatnonzero(reset_rows):
            inject(genv.envs[i], "CartPole-v1", obs[i].tolist(), 0)
        resets_seen += int(reset_rows.sum())
    assert resets_seen >= 5


def test_episode_statistics(backend):
    env = fenvs.make("Pendulum-v1", 4, seed=3, max_episode_steps=5)
    env.reset()
    total = torch.zeros(4)
    for t in range(5):
        _, reward, _, trunc, info = env.step(torch.zeros(4, 1))
        total += reward
        if t < 4:
            assert not info["_episode"].any() and (info["episode"]["l"] == 0).all()
            torch.testing.assert_close(env.episode_returns, total)
    assert trunc.all() and info["_episode"].all()
    assert (info["episode"]["l"] == 5).all()
    torch.testing.assert_close(info["episode"]["r"], total)
    _, reward, _, _, info = env.step(torch.zeros(4, 1))  # NEXT_STEP: the reset step
    assert (reward == 0).all() and not info["_episode"].any() and (env.episode_lengths == 0).all()


@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_same_seed_same_trajectory(env_id, backend):
    def rollout(seed):
        env = fenvs.make(env_id, 16, seed=seed, dtype=torch.float64, max_episode_steps=20)
        obs, _ = env.reset()
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(45):
            out.append(env.step(to_torch_actions(sample_actions(env_id, rng, 16), env))[0])
        return torch.stack(out)

    a, b = rollout(7), rollout(7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, rollout(8))


@requires_native
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_native_and_fallback_draw_the_same_resets(env_id):
    env = fenvs.make(env_id, 64, dtype=torch.float64)
    native, _ = env.reset(seed=11)
    _native.set_backend("torch")
    try:
        fallback, _ = env.reset(seed=11)
    finally:
        _native.set_backend("auto")
    torch.testing.assert_close(native, fallback, rtol=1e-12, atol=1e-12)


def test_reset_seeds_per_env_and_reset_without_seed_continues():
    env = fenvs.make("CartPole-v1", 3, dtype=torch.float64)
    a, _ = env.reset(seed=5)
    b, _ = env.reset()
    c, _ = env.reset(seed=[5, 5, 5])
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # env i has its own stream


def test_gymnasium_state_round_trip():
    env = fenvs.make("Acrobot-v1", 2, dtype=torch.float64)
    env.reset(seed=0)
    state = torch.tensor([[0.1, 0.2, 0.3, 0.4], [-0.1, -0.2, -0.3, -0.4]], dtype=torch.float64)
    env.set_state(state, elapsed_steps=7)
    torch.testing.assert_close(env.get_state(), state)
    assert (env.episode_lengths == 7).all()
    g = gymnasium.make("Acrobot-v1")
    g.reset(seed=0)
    inject(g, "Acrobot-v1", state[0].tolist(), 7)
    g.step(2)
    env.step(torch.tensor([2, 2]))
    assert env.get_state()[0].tolist() == gym_state(g)


@pytest.mark.parametrize(
    "env_id, actions, error, match",
    [
        ("CartPole-v1", torch.zeros(3, dtype=torch.int64), ValueError, "shape"),
        ("CartPole-v1", torch.zeros(4), TypeError, "integer"),
        ("CartPole-v1", torch.tensor([0, 1, 2, 0]), ValueError, r"\[0, 1\]"),
        ("CartPole-v1", torch.tensor([0, 1, -1, 0]), ValueError, r"\[0, 1\]"),
        ("CartPole-v1", [0, 1, 0, 1], TypeError, "torch.Tensor"),
        ("Pendulum-v1", torch.zeros(4), ValueError, "shape"),
        ("Pendulum-v1", torch.zeros(4, 1, dtype=torch.int64), TypeError, "floating"),
        ("Pendulum-v1", torch.tensor([[0.0], [float("nan")], [0.0], [0.0]]), ValueError, "NaN"),
    ],
)
def test_bad_actions(env_id, actions, error, match, backend):
    env = fenvs.make(env_id, 4)
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(actions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_action_on_wrong_device():
    env = fenvs.make("CartPole-v1", 2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="device|on cuda"):
        env.step(torch.zeros(2, dtype=torch.int64, device="cuda"))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(env_id="NoSuchEnv-v0", num_envs=2), ValueError, "NoSuchEnv"),
        (dict(env_id="CartPole-v1", num_envs=0), ValueError, "num_envs"),
        (dict(env_id="CartPole-v1", num_envs=2.0), TypeError, "num_envs"),
        (dict(env_id="CartPole-v1", num_envs=2, dtype=torch.float16), TypeError, "dtype"),
        (dict(env_id="CartPole-v1", num_envs=2, autoreset_mode="disabled"), ValueError, "autoreset_mode"),
        (dict(env_id="CartPole-v1", num_envs=2, gravity=3.0), TypeError, "gravity"),
        (dict(env_id="CartPole-v1", num_envs=2, max_episode_steps=0), ValueError, "max_episode_steps"),
        pytest.param(dict(env_id="CartPole-v1", num_envs=2, device="cuda"), ValueError, "CUDA is not available",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")),
    ],
)
def test_bad_make_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fenvs.make(**kwargs)


def test_env_kwargs_reach_the_physics(backend):
    env = fenvs.make("CartPole-v1", 2, sutton_barto_reward=True)
    env.reset(seed=0)
    _, reward, *_ = env.step(torch.zeros(2, dtype=torch.int64))
    assert (reward == 0).all()


@requires_native
@pytest.mark.parametrize("same_step", [False, True])
def test_opcheck(same_step):
    env = fenvs.make("CartPole-v1", 5, seed=0)
    env.reset()
    tensors = [env._state, env._elapsed, env._episode_return, env._autoreset, env._resets, env._seeds]
    torch.library.opcheck(torch.ops.fastrl.env_reset.default, ("CartPole-v1", *tensors, [0.0]))
    action = torch.tensor([0, 1, 1, 0, 1])
    torch.library.opcheck(torch.ops.fastrl.env_step.default,
                          ("CartPole-v1", *tensors, action, [0.0], 500, same_step))


def rollout_all_envs(steps: int = 60, n: int = 37) -> list[torch.Tensor]:
    """Every native env, float32 and float64, both autoreset modes: all step outputs of a random
    rollout (n not a multiple of the vector width, so loop tails run too)."""
    out = []
    for env_id in fenvs.NATIVE_ENVS:
        for dtype in (torch.float32, torch.float64):
            for mode in ("next_step", "same_step"):
                env = fenvs.make(env_id, n, dtype=dtype, seed=3, autoreset_mode=mode, max_episode_steps=25)
                out.append(env.reset()[0])
                rng = np.random.default_rng(0)
                for _ in range(steps):
                    obs, reward, term, trunc, info = env.step(to_torch_actions(sample_actions(env_id, rng, n), env))
                    out += [obs, reward, term, trunc, info["_episode"], info["episode"]["r"], info["episode"]["l"]]
                    out += [info["final_obs"]] if mode == "same_step" else []
    return out


def bad_actions_raise() -> None:
    """An out-of-range action anywhere in the batch (the vector body or its tail), and a NaN one,
    raise before the envs step."""
    for bad in (0, 11, 16):
        env = fenvs.make("CartPole-v1", 17, seed=0)
        env.reset()
        before = env.state_dict()
        actions = torch.zeros(17, dtype=torch.int64)
        actions[bad] = 2 if bad % 2 else -1
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            env.step(actions)
        assert all(torch.equal(v, before[k]) for k, v in env.state_dict().items() if isinstance(v, torch.Tensor))
    env = fenvs.make("Pendulum-v1", 17, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.zeros(17, 1).index_fill_(0, torch.tensor([13]), float("nan")))


def test_bad_actions_raise_before_stepping(backend):
    bad_actions_raise()


@requires_native
def test_baseline_cpu_build_matches_avx2(tmp_path):
    """ATEN_CPU_CAPABILITY=default turns off the AVX2 build of the step loop: the baseline build
    (what a CPU without AVX2 runs) gives bit-identical trajectories in a fresh process."""
    setup = f"from {__name__} import bad_actions_raise\nbad_actions_raise()\n"
    got, baseline = here_and_on_baseline_kernels(__name__, "rollout_all_envs", tmp_path, setup)
    for a, b in zip(got, baseline):
        assert a.dtype == b.dtype and torch.equal(a, b)


@requires_native
@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_compiled_step_matches_eager(mode):
    """Under torch.compile, step runs torch.ops.fastrl.env_step (traced in one graph with its fake
    kernel) instead of the pybind11 binding: same outputs, same env state afterwards."""
    def rollout(env, actions):
        outs = []
        for a in actions:
            obs, reward, term, trunc, info = env.step(a)
            outs.append(torch.cat([obs.flatten(), reward, term.float(), info["episode"]["r"]]))
        return torch.stack(outs)

    g = torch.Generator().manual_seed(0)
    actions = [torch.randint(0, 2, (6,), generator=g) for _ in range(12)]
    make = lambda: fenvs.make("CartPole-v1", 6, seed=1, autoreset_mode=mode, max_episode_steps=7)
    compiled_rollout_matches_eager(make, rollout, actions)


def compiled_rollout_matches_eager(make_env, rollout, actions):
    """``rollout(env, actions)`` compiled with fullgraph=True gives the outputs and the final env
    state of the eager run, each on a fresh ``make_env()``; returns the compiled run's env."""
    torch._dynamo.reset()
    eager, compiled = make_env(), make_env()
    eager.reset()
    compiled.reset()
    want = rollout(eager, actions)
    got = torch.compile(rollout, fullgraph=True)(compiled, actions)
    assert torch.equal(got, want)
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    return compiled


@pytest.mark.parametrize("copy_env", [copy.deepcopy, lambda env: pickle.loads(pickle.dumps(env))])
def test_copies_step_on_their_own(copy_env, backend):
    """A deep copy or an unpickled env continues exactly like the original, on its own tensors."""
    env = fenvs.make("Pendulum-v1", 5, seed=3, autoreset_mode="same_step", max_episode_steps=7)
    env.reset()
    twin = copy_env(env)
    actions = torch.linspace(-2, 2, 5).view(5, 1)
    for _ in range(12):
        want, got = env.step(actions), twin.step(actions)
        for a, b in zip(want[:4], got[:4]):
            assert torch.equal(a, b)
        assert torch.equal(want[4]["final_obs"], got[4]["final_obs"])
    assert twin._state.data_ptr() != env._state.data_ptr()


def test_actions_of_other_dtypes_and_layouts(backend):
    """int32 or numpy discrete actions, float32 actions for a float64 env and strided actions are
    converted, and step like int64 / float64 contiguous ones."""
    def first_step(env_id, dtype, actions):
        env = fenvs.make(env_id, 4, seed=0, dtype=dtype)
        env.reset()
        return env.step(actions)[0]

    a = torch.tensor([0, 1, 1, 0])
    want = first_step("CartPole-v1", torch.float32, a)
    assert torch.equal(first_step("CartPole-v1", torch.float32, a.int()), want)
    assert torch.equal(first_step("CartPole-v1", torch.float32, a.numpy()), want)
    assert torch.equal(first_step("CartPole-v1", torch.float32, torch.stack([a, a], 1)[:, 1]), want)
    u = torch.tensor([[-2.5], [0.5], [1.0], [3.0]])
    want = first_step("Pendulum-v1", torch.float64, u.double())
    assert torch.equal(first_step("Pendulum-v1", torch.float64, u), want)
    assert torch.equal(first_step("Pendulum-v1", torch.float64, torch.cat([u, u], 1)[:, :1]), want)


@requires_native
def test_op_rejects_bad_tensors():
    env = fenvs.make("CartPole-v1", 5, seed=0)
    env.reset()
    tensors = [env._state, env._elapsed, env._episode_return, env._autoreset, env._resets, env._seeds]
    with pytest.raises(RuntimeError, match="unknown env"):
        torch.ops.fastrl.env_reset("Nope-v0", *tensors, [0.0])
    with pytest.raises(RuntimeError, match="params"):
        torch.ops.fastrl.env_reset("CartPole-v1", *tensors, [])
    with pytest.raises(ValueError, match="actions must have shape"):
        torch.ops.fastrl.env_step("CartPole-v1", *tensors, torch.zeros(4, dtype=torch.int64), [0.0], 500, False)
    with pytest.raises(TypeError, match="integer"):
        torch.ops.fastrl.env_step("CartPole-v1", *tensors, torch.zeros(5), [0.0], 500, False)
    with pytest.raises(ValueError, match="max_episode_steps"):
        torch.ops.fastrl.env_step("CartPole-v1", *tensors, torch.zeros(5, dtype=torch.int64), [0.0], -1, False)


def test_gymnasium_fallback_for_other_ids():
    env = fenvs.make("FrozenLake-v1", 3, seed=0)
    assert isinstance(env, fenvs.GymnasiumVectorEnv)
    obs, _ = env.reset()
    assert isinstance(obs, torch.Tensor) and obs.shape == (3,)
    obs, reward, term, trunc, _ = env.step(torch.tensor([0, 1, 2]))
    assert reward.dtype == torch.float32 and term.dtype == torch.bool


@pytest.mark.cuda
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(env_id, dtype):
    """Same seed, same actions: CPU and CUDA trajectories. float32 shares its sin/cos code and is
    bit-identical; float64 uses each device's libm, whose last bits may differ: the bound below
    is a guess not yet measured on a GPU."""
    def rollout(device):
        env = fenvs.make(env_id, 256, device=device, dtype=dtype, seed=3, max_episode_steps=30)
        obs, _ = env.reset()
        rng = np.random.default_rng(0)
        out = [obs.cpu()]
        for _ in range(40):
            a = to_torch_actions(sample_actions(env_id, rng, 256), env).to(device)
            out.append(env.step(a)[0].cpu())
        return torch.stack(out)

    tol = dict(rtol=0, atol=0) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(rollout("cuda"), rollout("cpu"), **tol)


@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_state_dict_resumes_exactly(env_id, backend):
    # Steps after load_state_dict equal the steps the original env takes, resets included.
    env = fenvs.make(env_id, 8, seed=3, dtype=torch.float64, max_episode_steps=15, autoreset_mode="same_step")
    env.reset()
    rng = np.random.default_rng(1)
    actions = [to_torch_actions(sample_actions(env_id, rng, 8), env) for _ in range(40)]
    for a in actions[:10]:
        env.step(a)
    saved = env.state_dict()
    later = [env.step(a) for a in actions[10:]]
    other = fenvs.make(env_id, 8, seed=99, dtype=torch.float64, max_episode_steps=15, autoreset_mode="same_step")
    other.load_state_dict(saved)
    for (o1, r1, te1, tr1, i1), a in zip(later, actions[10:]):
        o2, r2, te2, tr2, i2 = other.step(a)
        assert torch.equal(o1, o2) and torch.equal(r1, r2) and torch.equal(te1, te2) and torch.equal(tr1, tr2)
        assert torch.equal(i1["episode"]["r"], i2["episode"]["r"])


@pytest.mark.filterwarnings("ignore:.*out of date:DeprecationWarning")  # CartPole-v0: a non-native id
def test_gymnasium_fallback_reports_episodes_and_final_obs():
    env = fenvs.make("CartPole-v0", 4, seed=0, autoreset_mode="same_step")
    env.reset()
    ended = 0
    for _ in range(60):
        obs, reward, term, trunc, info = env.step(torch.ones(4, dtype=torch.long))
        done = term | trunc
        assert info["final_obs"].shape == obs.shape and torch.equal(info["_episode"], done)
        if done.any():
            ended += int(done.sum())
            assert (info["episode"]["l"][done] > 0).all() and (info["final_obs"][done] != obs[done]).any()
    assert ended > 0
