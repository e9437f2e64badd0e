"""Learning from pixels (issue 16): the trainers on MinAtar's bool [N, 10, 10, C] grids get the MinAtar
paper's convolutional networks, keep the observations as bools in their buffers, refuse observation
normalization, and checkpoint, resume exactly, evaluate, load and export like the classic runs."""

import gymnasium
import numpy as np
import pytest
import torch

import fastrl
from fastrl import cli
from fastrl.algos import ALGOS, DQN, PPO
from fastrl.algos.defaults import TUNED
from fastrl.nn import ActorCritic, ConvActorCritic, ConvQNetwork, QNetwork
from fastrl.utils.config import ConfigError
from tests.algos.test_resume_exact import (
    assert_same_state,
    csv_without_wall_time,
    straight_run_leaving_a_crash,
)

ENV = "MinAtar/Breakout-v1"  # 4 channels, 3 actions
TINY = {
    "ppo": dict(num_envs=2, num_steps=8, num_minibatches=2, epochs=1, total_steps=32, hidden=(8,)),
    "a2c": dict(num_envs=2, num_steps=4, total_steps=16, hidden=(8,)),
    "reinforce": dict(num_envs=2, num_steps=8, total_steps=32, hidden=(8,)),
    "dqn": dict(num_envs=2, total_steps=32, learning_starts=8, batch_size=4, buffer_size=32,
                target_update_every=2, hidden=(8,)),
}


def tiny(algo: str, env_id: str = ENV, **overrides):
    cls = ALGOS[algo]
    return cls(cls.Config(env_id=env_id, seed=3, **{**TINY[algo], **overrides}))


@pytest.mark.parametrize("algo", TINY)
def test_image_observations_get_the_conv_networks_and_train(algo):
    trainer = tiny(algo)
    net = trainer.q if algo == "dqn" else trainer.agent
    assert isinstance(net, ConvQNetwork if algo == "dqn" else ConvActorCritic)
    grid = torch.zeros(1, 10, 10, 4, dtype=torch.bool)
    out = net(grid) if algo == "dqn" else net.dist(grid).logits
    assert out.shape == (1, 3)  # Breakout's 3 actions
    assert trainer.train()["steps"] == TINY[algo]["total_steps"]
    # flat observations keep the MLPs
    flat = tiny(algo, "CartPole-v1", hidden=(8, 8))
    assert isinstance(flat.q if algo == "dqn" else flat.agent, QNetwork if algo == "dqn" else ActorCritic)


def test_dqn_replay_buffer_keeps_bool_observations():
    trainer = tiny("dqn")
    first = trainer.obs.clone()
    trainer.train()
    b = trainer.buffer
    assert b.obs.dtype == b.next_obs.dtype == torch.bool
    assert b.obs.shape == (16, 2, 10, 10, 4)
    assert torch.equal(b.obs[0], first)  # the env's observations, stored as they came
    # a step's next observation is the following step's observation, except where an episode ended
    # (there: its final observation)
    follows = ~b.done[:-1]
    assert follows.any()
    assert torch.equal(b.next_obs[:-1][follows], b.obs[1:][follows])


def test_rollouts_keep_bool_observations():
    trainer = tiny("ppo")
    batch = trainer.collect_rollout()
    assert batch["obs"].dtype == batch["final_obs"].dtype == torch.bool
    assert batch["obs"].shape == (8, 2, 10, 10, 4)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "reinforce"])
def test_observation_normalization_is_refused_for_images(algo):
    with pytest.raises(ConfigError, match="normalize_obs: MinAtar/Breakout-v1 has image observations") as e:
        tiny(algo, normalize_obs=True)
    assert e.value.field == "normalize_obs"


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_conv_networks_take_one_hidden_size(algo):
    with pytest.raises(ConfigError, match=r"hidden: .*give its one size") as e:
        tiny(algo, hidden=(8, 8))
    assert e.value.field == "hidden"


def test_an_unknown_minatar_id_is_refused_naming_env_id():
    with pytest.raises(ConfigError, match="MinAtar/Pong-v1") as e:
        PPO(PPO.Config(env_id="MinAtar/Pong-v1"))
    assert e.value.field == "env_id"


class ImagesWithContinuousActions(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(0, 1, (5, 5, 1), np.float32)
    action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((5, 5, 1), np.float32), {}

    def step(self, action):
        return np.zeros((5, 5, 1), np.float32), 0.0, True, False, {}


def test_images_with_continuous_actions_are_refused_naming_env_id():
    gymnasium.register("fastrl-test/ImagesContinuous-v0", entry_point=ImagesWithContinuousActions)
    try:
        with pytest.raises(ConfigError, match="image observations .* and continuous actions") as e:
            PPO(PPO.Config(env_id="fastrl-test/ImagesContinuous-v0", num_envs=2, hidden=(8,)))
        assert e.value.field == "env_id"
    finally:
        del gymnasium.registry["fastrl-test/ImagesContinuous-v0"]


# Exact resume, as tests/algos/test_resume_exact.py for the classic envs: checkpoint every iteration,
# log every second, crash after iteration k; the resumed run must write the same rows and state.
@pytest.mark.parametrize("double_dqn", [False, True])
def test_dqn_gradient_steps_share_one_target_forward_and_equal_steps_one_by_one(double_dqn):
    """An iteration's gradient steps draw their windows first and evaluate the target network once
    for all of them (DQN._learn): the same weights, optimizer state and RNG as the steps taken one
    at a time, each drawing its windows and evaluating the target network on its own."""
    values = dict(num_envs=4, learning_starts=0, batch_size=8, buffer_size=256, n_step=2, hidden=(16,),
                  double_dqn=double_dqn)
    batched, one_by_one = tiny("dqn", **values), tiny("dqn", **values)
    for t in (batched, one_by_one):  # the same transitions in both buffers
        torch.manual_seed(0)
        for _ in range(12):
            t._collect()
    torch.manual_seed(7)
    batched._learn(4)
    batched_rng = torch.get_rng_state()
    torch.manual_seed(7)
    for _ in range(4):
        rows, cols = one_by_one.buffer.sample_windows(8, 2)
        one_by_one.learn_on(rows, cols)  # the target network's forward on these windows alone
    assert torch.equal(torch.get_rng_state(), batched_rng)
    for (name, a), b in zip(batched.q.state_dict().items(), one_by_one.q.state_dict().values()):
        assert torch.equal(a, b), name
    assert_same_state(batched.optimizer.state_dict(), one_by_one.optimizer.state_dict())


RESUME = {  # random policies end episodes of Breakout within 6 steps, of Seaquest within 2
    "dqn": (dict(env_id="MinAtar/Breakout-v1", num_envs=4, total_steps=4 * 24, learning_starts=16, batch_size=8,
                 buffer_size=128,
                 target_update_every=4, train_every=2, hidden=(8,), eval_every=4 * 6, eval_episodes=2), 11),
    "ppo": (dict(env_id="MinAtar/Seaquest-v1", num_envs=4, num_steps=8, num_minibatches=2, epochs=2,
                 total_steps=4 * 8 * 6, hidden=(8,)), 3),
}


@pytest.mark.parametrize("algo", RESUME)
def test_minatar_resume_after_a_crash_is_exact(algo, tmp_path):
    values, k = RESUME[algo]
    cls = ALGOS[algo]
    config = cls.Config(**values, seed=5, checkpoint_every=1, log_every=2)
    straight_dir, crash_dir = tmp_path / "straight", tmp_path / "crashed"
    straight = straight_run_leaving_a_crash(cls, config, k, straight_dir, crash_dir)
    assert straight.iteration > k + 1
    crashed = torch.load(crash_dir / "checkpoint.pt", weights_only=True)
    assert crashed["obs"].dtype == torch.bool
    if algo == "dqn":
        assert crashed["modules"]["buffer"]["obs"].dtype == torch.bool
    resumed = cls.from_checkpoint(crash_dir, out_dir=crash_dir)
    resumed.train()
    rows = csv_without_wall_time(crash_dir / "metrics.csv")
    assert rows == csv_without_wall_time(straight_dir / "metrics.csv")
    assert any(r["episodic_return"] not in ("", "nan") for r in rows)  # episodes ended, so were carried over
    assert_same_state(resumed.state_dict(), straight.state_dict())


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_a_minatar_run_loads_evaluates_and_exports(algo, tmp_path):
    cls = ALGOS[algo]
    trainer = cls(cls.Config(env_id=ENV, seed=2, **TINY[algo]), out_dir=tmp_path / "run")
    trainer.train()
    returns = trainer.evaluate(2)
    assert len(returns) == 2 and all(r >= 0 for r in returns)

    policy = fastrl.load_policy(tmp_path / "run")
    obs = torch.rand(5, 10, 10, 4) < 0.3  # bool grids, as the env gives them
    assert torch.equal(policy.act(obs), trainer.act(obs))
    assert policy.act(obs[0].numpy()) == int(trainer.act(obs[:1])[0])
    path = fastrl.export_policy(policy, tmp_path / "policy.pt2")
    program = torch.export.load(path).module()
    assert torch.equal(program(obs.float()), trainer.act(obs))


def test_the_cli_starts_minatar_runs_with_the_tuned_defaults(monkeypatch, tmp_path):
    seen = []

    def stop(self, config, **kwargs):
        seen.append(config)
        raise KeyboardInterrupt  # the CLI's config is built; no training needed

    for algo in ("ppo", "dqn"):
        monkeypatch.setattr(ALGOS[algo], "__init__", stop)
        assert cli.main(["train", algo, "--env", ENV, "--out", str(tmp_path / algo)]) == 130
    ppo, dqn = seen
    assert ppo == PPO.tuned_config(ENV) and dqn == DQN.tuned_config(ENV)
    # gymnax's PPO but for its step size (docs/trainers.md), and the MinAtar paper's DQN
    assert (ppo.num_envs, ppo.num_steps, ppo.epochs, ppo.hidden) == (64, 128, 4, (128,))
    assert (ppo.learning_rate, ppo.anneal_lr, ppo.total_steps) == (4e-3, True, 5_000_000)
    assert (dqn.buffer_size, dqn.batch_size, dqn.learning_starts, dqn.end_epsilon) == (100_000, 32, 5_000, 0.1)
    assert dqn.target_update_every * dqn.num_envs == 1_000  # frames between target syncs
    assert dqn.exploration_steps == 100_000  # frames of epsilon decay, however long the run
    assert dqn.gradient_steps == dqn.num_envs  # one gradient step per frame
    assert (dqn.optimizer, dqn.learning_rate) == ("rmsprop", 2.5e-4)
    assert all(env_id in TUNED[algo] for algo in ALGOS for env_id in fastrl.envs.MINATAR_ENVS)
