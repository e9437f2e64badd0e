"""Configs are validated completely before any work, in the Python API and the CLI: every field's
type (from its annotation), finiteness and range, the seed's range, the env id; a --config file
that is missing, unreadable, malformed or not a table is one line naming the file. The bad values
are generated from each config's annotations, so a new field is covered when it is added."""

import dataclasses
import importlib.util
import json
import typing

import numpy as np
import pytest

from fastrl.algos import ALGOS
from tests.algos._util import SMALL, assert_one_line_error, flags, run_cli

NAN, INF = float("nan"), float("inf")


def wrong_values(annotation):
    """Values of the wrong type (or non-finite) for a field annotated ``annotation``."""
    optional = type(None) in typing.get_args(annotation)
    if optional:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        values = ["64", 64, [64, "x"], [64, 1.5], [True], {"a": 1}]
    elif typing.get_origin(annotation) is dict:
        values = ["a=1", [("a", 1)], {"a": [1]}, {"a": NAN}, {"a": {"b": 1}}]  # JSON keys are strings
    else:
        values = {
            bool: ["no", 1, 0, 1.0, "true"],
            int: ["0", 2.5, 2.0, True, [1], INF],
            float: ["fast", True, NAN, INF, -INF, 10**400, [1.0]],
            str: [1, True, ["CartPole-v1"], 2.5],
        }[annotation]
    return values if optional else [*values, None]


def cases():
    for algo, cls in ALGOS.items():
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            for value in wrong_values(hints[f.name]):
                yield pytest.param(algo, f.name, value, id=f"{algo}-{f.name}={value!r}"[:80])


OUT_OF_RANGE = [
    ("num_envs", 0), ("num_envs", -3), ("total_steps", 0), ("seed", -1), ("seed", 2**63), ("seed", 2**64),
    ("log_every", 0), ("checkpoint_every", -1), ("eval_every", -1), ("eval_episodes", 0), ("cpu_threads", 0),
    ("gamma", 1.5), ("gamma", -0.1), ("vf_coef", -1.0), ("entropy_coef", -0.01), ("max_grad_norm", 0.0),
    ("hidden", (0,)), ("hidden", (64, -1)), ("learning_rate", 0.0), ("learning_rate", -1e-3),
    ("num_steps", 0), ("gae_lambda", 1.01), ("num_minibatches", 0), ("epochs", 0), ("clip_low", -0.2),
    ("device", "tpu"), ("device", ""), ("env_id", "NoSuchEnv-v0"), ("env_id", "Blackjack-v1"),
]
OUT_OF_RANGE_DQN = [
    ("buffer_size", 0), ("batch_size", 0), ("n_step", 0), ("tau", 0.0), ("tau", 1.5), ("target_update_every", 0),
    ("train_every", 0), ("gradient_steps", 0), ("learning_starts", -1), ("start_epsilon", 2.0),
    ("end_epsilon", -0.1), ("exploration_fraction", 1.5), ("exploration_steps", -1), ("loss", "l1"),
    ("max_grad_norm", -1.0), ("optimizer", "sgd"),
    ("hidden", (0,)), ("seed", -1), ("env_id", "Pendulum-v1"),
]


def build(algo, **values):
    cls = ALGOS[algo]
    return cls(cls.Config(**{**SMALL[algo], **values}))


# -------------------------------------------------------------------------- Python API


@pytest.mark.parametrize("algo,name,value", list(cases()))
def test_wrong_type_is_refused_naming_the_field(algo, name, value):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        build(algo, **{name: value})


@pytest.mark.parametrize("name,value", OUT_OF_RANGE)
def test_out_of_range_is_refused_naming_the_field(name, value):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        build("ppo", **{name: value})


@pytest.mark.parametrize("name,value", OUT_OF_RANGE_DQN)
def test_dqn_out_of_range_is_refused_naming_the_field(name, value):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        build("dqn", **{name: value})


def test_one_sample_batches_cannot_normalize_advantages():
    with pytest.raises(ValueError, match="normalize_advantages"):  # std of one sample is NaN: the loss would be NaN
        build("ppo", num_envs=1, num_steps=4, num_minibatches=4)
    with pytest.raises(ValueError, match="normalize_advantages"):
        build("a2c", num_envs=1, num_steps=1, normalize_advantages=True)


def test_numpy_numbers_and_lists_are_accepted_as_plain_values():
    trainer = build("ppo", num_envs=np.int64(2), learning_rate=np.float32(0.5), hidden=[16, np.int32(8)],
                    normalize_advantages=np.bool_(True), gamma=1)
    cfg = trainer.config
    assert type(cfg.num_envs) is int and type(cfg.learning_rate) is float and type(cfg.gamma) is float
    assert cfg.hidden == (16, 8) and all(type(h) is int for h in cfg.hidden) and cfg.normalize_advantages is True


def test_validation_runs_before_any_work(monkeypatch, tmp_path):
    import fastrl.envs

    def no_env(*args, **kwargs):
        raise AssertionError("an environment was created for an invalid config")

    monkeypatch.setattr(fastrl.envs, "make", no_env)
    cls = ALGOS["ppo"]
    with pytest.raises(ValueError, match="learning_rate"):
        cls(cls.Config(**SMALL["ppo"], learning_rate=INF), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="Box2D is installed")
def test_env_needing_a_missing_dependency_is_a_config_error():
    with pytest.raises(ValueError, match="env_id 'LunarLander-v3'"):
        build("ppo", env_id="LunarLander-v3")


# -------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv,fragments", [
    (["--learning-rate", "inf"], ["learning_rate must be a finite number"]),
    (["--learning-rate", "nan"], ["learning_rate must be a finite number"]),
    (["--hidden", "0"], ["hidden[0] must be > 0"]),
    (["--hidden", "64", "-1"], ["hidden[1] must be > 0"]),
    (["--seed", str(2**64)], ["seed must be in [0, 2**63)"]),
    (["--seed", "-1"], ["seed must be in [0, 2**63)"]),
    (["--env", "Blackjack-v1"], ["env_id 'Blackjack-v1'"]),
    (["--env", "NoSuchEnv-v0"], ["env_id 'NoSuchEnv-v0' is not a registered"]),
    (["--num-envs", "0"], ["num_envs must be > 0"]),
    (["--device", "tpu"], ["device must be cpu or cuda"]),
])
def test_cli_bad_flag_is_one_line(tmp_path, capsys, argv, fragments):
    out = tmp_path / "run"
    rc, stdout, err = run_cli(capsys, ["train", "ppo", *flags(SMALL["ppo"]), "--out", out, "--quiet", *argv])
    assert_one_line_error(rc, err, "fastrl train:", *fragments)
    assert stdout == "" and not out.exists()


def write(path, text):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


CONFIG_FILES = [
    # (file name, content, what the one line says)
    ("issue.toml", 'seed = "0"\n', "seed must be an int, got '0' (str)"),
    ("issue.toml", 'learning_rate = "fast"\n', "learning_rate must be a number, got 'fast' (str)"),
    ("issue.toml", 'anneal_lr = "no"\n', "anneal_lr must be true or false, got 'no' (str)"),
    ("issue.toml", "num_steps = 2.5\n", "num_steps must be an int, got 2.5 (float)"),
    ("issue.toml", "learning_rate = inf\n", "learning_rate must be a finite number"),
    ("issue.toml", "hidden = [64, 0]\n", "hidden[1] must be > 0"),
    ("issue.json", '{"seed": 18446744073709551616}', "seed must be in [0, 2**63)"),
    ("issue.json", '{"learning_rate": NaN}', "learning_rate must be a finite number"),
    ("issue.json", '{"learning_rate": 1e400}', "learning_rate must be a finite number"),
    ("issue.json", '{"env_id": "Blackjack-v1"}', "env_id 'Blackjack-v1'"),
    ("issue.json", '{"no_such_field": 1}', "unknown config fields for ppo: ['no_such_field']"),
    ("bad.json", '{"num_envs": 2,', "invalid JSON"),
    ("bad.json", "", "invalid JSON"),
    ("bad.toml", "num_envs = \n", "invalid TOML"),
    ("bad.toml", '{"num_envs": 2}', "invalid TOML"),
    ("toml-in.json", "num_envs = 2\n", "it reads as TOML: name the file .toml"),
    ("list.json", "[1, 2]", "must hold a table of config fields (a JSON object), not a list"),
    ("str.json", '"ppo"', "not a str"),
    ("null.json", "null", "not a NoneType"),
    ("number.json", "3", "not a int"),
    ("latin1.json", '{"env_id": "Cart\xe9"}'.encode("latin-1"), "not UTF-8 text"),
    ("random.toml", bytes(range(256)), "not UTF-8 text"),
]


@pytest.mark.parametrize("name,content,says", CONFIG_FILES, ids=[f"{n}:{s[:30]}" for n, _, s in CONFIG_FILES])
def test_cli_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, name, content, says):
    path = write(tmp_path / name, content)
    out = tmp_path / "run"
    rc, stdout, err = run_cli(capsys, ["train", "ppo", "--config", path, "--out", out, "--quiet"])
    named = [] if says.startswith("env_id") else [f"--config {path}"]  # the env is judged after merging
    assert_one_line_error(rc, err, "fastrl train:", says, *named)
    assert stdout == "" and not out.exists()


def test_cli_missing_or_unreadable_config_file(tmp_path, capsys):
    for path, says in [(tmp_path / "missing.toml", "no such file"), (tmp_path, "is a directory")]:
        rc, _, err = run_cli(capsys, ["train", "ppo", "--config", path, "--out", tmp_path / "run", "--quiet"])
        assert_one_line_error(rc, err, f"--config {path}", says)


def test_cli_config_file_with_utf8_bom_is_read(tmp_path, capsys):
    path = write(tmp_path / "bom.json", b"\xef\xbb\xbf" + json.dumps({**SMALL["ppo"], "hidden": [16]}).encode())
    rc, stdout, _ = run_cli(capsys, ["train", "ppo", "--config", path, "--out", tmp_path / "run", "--quiet",
                                     "--final-eval", "1"])
    assert rc == 0 and "2 envs, 32 steps" in stdout


@pytest.mark.parametrize("algo,name,value", [c for c in cases() if c.values[0] in ("ppo", "dqn")])
def test_cli_config_corpus_every_wrong_type_is_one_line(tmp_path, capsys, algo, name, value):
    """The fuzz corpus of bad config files: each field with each wrong type, as JSON."""
    # NaN, Infinity as Python writes them
    path = write(tmp_path / "config.json", json.dumps({**SMALL[algo], name: value}))
    out = tmp_path / "run"
    rc, stdout, err = run_cli(capsys, ["train", algo, "--config", path, "--out", out, "--quiet", "--final-eval", "1"])
    assert_one_line_error(rc, err, f"--config {path}", name)
    assert stdout == "" and not out.exists()


def test_env_from_a_config_file_gets_that_envs_tuned_defaults(tmp_path, capsys):
    from fastrl.algos import PPO
    from fastrl.algos.defaults import TUNED

    path = write(tmp_path / "pendulum.json", json.dumps({**SMALL["ppo"], "env_id": "Pendulum-v1"}))
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, ["train", "ppo", "--config", path, "--out", out, "--quiet", "--final-eval", "1"])
    assert rc == 0, err
    config = PPO.from_checkpoint(out).config
    assert config.target_return == TUNED["ppo"]["Pendulum-v1"]["target_return"]  # not CartPole's 475
    assert config.normalize_reward is True
