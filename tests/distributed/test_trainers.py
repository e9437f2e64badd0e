"""The classic trainers under a 2-process gloo job run the same algorithm as one process on the same
global config: the same metrics.csv and parameters (to float tolerance), one metrics.csv (rank 0's),
checkpoints that resume exactly at the same world size and refuse another."""

import csv
import math

import pytest
import torch

from fastrl.algos import ALGOS
from fastrl.utils.checkpoint import CheckpointError
from fastrl.utils.config import ConfigError

from ._launch import run_ranks

# Tiny global configs (num_envs and batch sizes are job totals, split over the ranks); short
# episodes so that episode statistics, truncation and autoreset all happen within a few iterations.
CONFIGS = {
    "ppo-discrete": ("ppo", dict(env_id="CartPole-v1", num_envs=4, num_steps=8, num_minibatches=2, epochs=2,
                                 total_steps=96, hidden=(16,), normalize_obs=True, normalize_reward=True,
                                 env_kwargs={"max_episode_steps": 12}, seed=3)),
    "ppo-continuous": ("ppo", dict(env_id="Pendulum-v1", num_envs=4, num_steps=8, num_minibatches=4, epochs=1,
                                   total_steps=64, hidden=(16,), normalize_obs=True,
                                   env_kwargs={"max_episode_steps": 10}, seed=5)),
    # minibatches of one sample: in each, one rank has no rows at all and must still join the step
    "ppo-empty-shares": ("ppo", dict(env_id="CartPole-v1", num_envs=2, num_steps=2, num_minibatches=4, epochs=2,
                                     total_steps=24, hidden=(16,), normalize_advantages=False,
                                     env_kwargs={"max_episode_steps": 3}, seed=6)),
    "a2c": ("a2c", dict(env_id="CartPole-v1", num_envs=4, num_steps=5, total_steps=60, hidden=(16,),
                        normalize_advantages=True, entropy_coef=0.01, seed=1)),
    # no baseline: Monte-Carlo returns, so each rank holds a different number of valid steps
    "reinforce": ("reinforce", dict(env_id="CartPole-v1", num_envs=4, num_steps=16, total_steps=128, hidden=(16,),
                                    baseline=False, env_kwargs={"max_episode_steps": 10}, seed=2)),
}


def _parameters(trainer) -> dict[str, torch.Tensor]:
    net = trainer.q if trainer.algo == "dqn" else trainer.agent
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _train(rank, algo, config, out_dir, until=None):
    cls = ALGOS[algo]
    trainer = cls(cls.Config(**config), out_dir=out_dir)
    summary = trainer.train(until_step=until)
    return {"params": _parameters(trainer), "summary": summary, "world": trainer.world.size}


def _metrics(path) -> list[dict[str, float]]:
    """metrics.csv's rows without the wall time (NaN for an empty cell)."""
    with open(path) as f:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items() if k != "wall_time"}
                for row in csv.DictReader(f)]


def _assert_rows_close(got, expected):
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        for k in e:
            if math.isnan(e[k]):
                assert math.isnan(g[k]), k
            else:
                assert g[k] == pytest.approx(e[k], rel=1e-4, abs=1e-5), (k, g[k], e[k])


def _assert_params_close(got, expected):
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=1e-5)


def _train_all(rank, out_dir):
    """Every case of CONFIGS, one after another in one job (starting a job costs more than a case)."""
    return {case: _train(rank, algo, config, out_dir / case) for case, (algo, config) in CONFIGS.items()}


def test_two_processes_train_as_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks = run_ranks(_train_all, timeout=300, out_dir=tmp_path / "two")
    for case, (algo, config) in CONFIGS.items():
        one = _train(0, algo, config, tmp_path / "one" / case)
        two = [r[case] for r in ranks]
        assert [r["world"] for r in two] == [2, 2] and one["world"] == 1
        # every rank holds the same network, which is the single process's
        for k in two[0]["params"]:
            assert torch.equal(two[0]["params"][k], two[1]["params"][k]), (case, k)
        _assert_params_close(two[0]["params"], one["params"])
        expected = _metrics(tmp_path / "one" / case / "metrics.csv")
        _assert_rows_close(_metrics(tmp_path / "two" / case / "metrics.csv"), expected)
        assert any(not math.isnan(r["episodic_return"]) for r in expected), case  # episodes were counted
        for r in two:
            assert r["summary"]["episodes_seen"] == one["summary"]["episodes_seen"] > 0
            assert r["summary"]["return_last100"] == pytest.approx(one["summary"]["return_last100"])
        assert not (tmp_path / "two" / case / "learning_curve.png").with_suffix(".tmp").exists()


RESUMED = {
    "ppo": CONFIGS["ppo-discrete"][1],
    "dqn": dict(env_id="CartPole-v1", num_envs=4, total_steps=160, learning_starts=40, batch_size=8,
                buffer_size=64, target_update_every=3, hidden=(16,), seed=4),
}


def _whole_and_resumed(rank, out_dir):
    """Per algorithm: a whole run, and a run saved half-way then resumed from its checkpoint."""
    out = {}
    for algo, config in RESUMED.items():
        whole = _train(rank, algo, config, out_dir / algo / "whole")
        _train(rank, algo, config, out_dir / algo / "run", until=config["total_steps"] // 2)
        trainer = ALGOS[algo].from_checkpoint(out_dir / algo / "run", out_dir=out_dir / algo / "run")
        trainer.train()
        out[algo] = (whole["params"], _parameters(trainer))
    return out


def test_a_two_process_checkpoint_resumes_exactly_with_two_and_refuses_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks = run_ranks(_whole_and_resumed, timeout=300, out_dir=tmp_path)
    for algo in RESUMED:
        for rank in ranks:
            whole, resumed = rank[algo]
            for k in whole:
                assert torch.equal(resumed[k], whole[k]), (algo, k)
        run = tmp_path / algo / "run"
        _assert_rows_close(_metrics(run / "metrics.csv"), _metrics(tmp_path / algo / "whole" / "metrics.csv"))
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        assert state["world_size"] == 2 and len(state["shards"]) == 2
        assert not torch.equal(state["shards"][0]["obs"], state["shards"][1]["obs"])  # each rank's own envs
        with pytest.raises(CheckpointError, match=r"job of 2 process\(es\) and this one has 1.*nproc-per-node=2"):
            ALGOS[algo].from_checkpoint(run)


def _dqn_step(rank, config):
    dqn = ALGOS["dqn"](ALGOS["dqn"].Config(**config))
    dqn.train()  # fills the replay buffers (learning_starts: no gradient step yet)
    rows, cols = dqn.sample_windows()
    buffer = {k: v.clone() for k, v in dqn.buffer.state_dict().items() if isinstance(v, torch.Tensor)}
    before = _parameters(dqn)
    metrics = dqn.learn_on(rows, cols)
    return {"rows": rows, "cols": cols + dqn.env_shard.start, "buffer": buffer, "before": before,
            "after": _parameters(dqn), "td_loss": float(metrics["td_loss"])}


def test_dqn_gradient_step_equals_the_single_process_step_on_the_concatenated_batch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = dict(env_id="CartPole-v1", num_envs=4, total_steps=48, learning_starts=1000, batch_size=6,
                  buffer_size=64, hidden=(16,), seed=0, env_kwargs={"max_episode_steps": 7})
    ranks = run_ranks(_dqn_step, timeout=180, config=config)
    one = ALGOS["dqn"](ALGOS["dqn"].Config(**config))
    one.train()
    # the single process's buffer holds both ranks' envs, side by side (the same envs and actions)
    for k, v in one.buffer.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, torch.cat([ranks[0]["buffer"][k], ranks[1]["buffer"][k]], 1)), k
    assert ranks[0]["before"].keys() == _parameters(one).keys()
    rows = torch.cat([r["rows"] for r in ranks], 1)
    cols = torch.cat([r["cols"] for r in ranks])
    assert rows.shape == (one.config.n_step, 6)
    metrics = one.learn_on(rows, cols)
    _assert_params_close(ranks[0]["after"], _parameters(one))
    _assert_params_close(ranks[1]["after"], _parameters(one))
    assert (ranks[0]["td_loss"] + ranks[1]["td_loss"]) / 2 == pytest.approx(float(metrics["td_loss"]), rel=1e-5)
    assert any(not torch.equal(ranks[0]["after"][k], ranks[0]["before"][k]) for k in ranks[0]["after"])


def _config_errors(rank):
    out = []
    for algo, config in (("a2c", dict(num_envs=3, num_steps=2, total_steps=12)),
                         ("dqn", dict(num_envs=2, batch_size=5, total_steps=12))):
        cls = ALGOS[algo]
        try:
            cls(cls.Config(**config))
            out.append(None)
        except ConfigError as e:
            out.append((e.field, str(e)))
    return out


def test_totals_that_do_not_split_over_the_processes_are_config_errors(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for errors in run_ranks(_config_errors):
        (field, message), (field2, message2) = errors
        assert field == "num_envs" and "num_envs = 3 must be a multiple of the number of processes (2)" in message
        assert field2 == "batch_size" and "batch_size = 5 must be a multiple" in message2


def _stopped_by_one_rank(rank, out_dir):
    """A stop requested on rank 1 alone, in iteration 0 (a signal that reached one rank); rows are
    logged every 2 iterations, where the ranks agree. Then the run resumed to its end."""
    cls = ALGOS["ppo"]
    config = cls.Config(**{**RESUMED["ppo"], "log_every": 2})
    trainer = cls(config, out_dir=out_dir)
    train_iteration = trainer.train_iteration

    def requesting(*args):
        if rank == 1 and trainer.iteration == 0:
            trainer.stop_request.request()
        return train_iteration(*args)

    trainer.train_iteration = requesting
    trainer.train()
    stopped_at = (trainer.iteration, trainer.stop_request.stopped)
    resumed = cls.from_checkpoint(out_dir, out_dir=out_dir)
    resumed.train()
    return stopped_at, _parameters(resumed)


def test_a_stop_on_one_rank_stops_every_rank_at_the_same_logged_iteration(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    whole = run_ranks(_train, timeout=300, algo="ppo", config=RESUMED["ppo"], out_dir=tmp_path / "whole")[0]["params"]
    ranks = run_ranks(_stopped_by_one_rank, timeout=300, out_dir=tmp_path / "stopped")
    assert [stopped_at for stopped_at, _ in ranks] == [(2, True), (2, True)]
    for _, params in ranks:
        for k in whole:
            assert torch.equal(params[k], whole[k]), k
