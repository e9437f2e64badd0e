"""``fastrl rlhf train ALGO --config run.toml``: a tiny built-in GPT trained against a reward
function of this module (or on preference pairs for DPO) writes metrics.csv and its run file;
a run resumed from its directory continues exactly (its whole metrics.csv equals a straight run's);
bad input is one line naming it, exit code 2."""

from __future__ import annotations

import csv
import json
import os
import signal

import pytest
import torch

from fastrl import cli
from fastrl.rlhf.run import run_config

ALPHABET = "abcd="
PROMPTS = ["ab=", "c=", "dda=", "b="]
CONFIG = {  # GRPO and PPO fields kept tiny; the ones the other trainer lacks are left out per algo
    "grpo": "prompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 4\nlearning_rate = 0.01\n",
    "ppo": "batch_size = 4\nmax_new_tokens = 4\nlearning_rate = 0.01\n",
    "dpo": "batch_size = 2\nlearning_rate = 0.01\n",
}
CALLS = {"count": 0, "crash_at": None, "sigterm_at": None}


class Crash(Exception):
    pass


def on_topic(prompts: list[str], completions: list[str]) -> list[float]:
    """Share of the completion's characters that occur in the prompt (0 for an empty one); raises
    Crash at call ``CALLS["crash_at"]`` (a run killed mid-way), sends this process SIGTERM at call
    ``CALLS["sigterm_at"]`` (a job scheduler's notice)."""
    CALLS["count"] += 1
    if CALLS["count"] == CALLS["crash_at"]:
        raise Crash
    if CALLS["count"] == CALLS["sigterm_at"]:
        os.kill(os.getpid(), signal.SIGTERM)
    return [sum(c in p for c in r) / len(r) if r else 0.0 for p, r in zip(prompts, completions)]


def length(prompts, completions):
    return [float(len(r)) for r in completions]


NOT_CALLABLE = 3


@pytest.fixture(autouse=True)
def calls():
    CALLS.update(count=0, crash_at=None, sigterm_at=None)
    threads = torch.get_num_threads()
    yield CALLS
    torch.set_num_threads(threads)


def write_run(tmp_path, algo, reward='functions = ["tests.rlhf.test_cli_train:on_topic"]', extra="") -> str:
    """A run file with relative paths, in its own directory (they resolve from there)."""
    d = tmp_path / "spec"
    d.mkdir(exist_ok=True)
    (d / "prompts.txt").write_text("\n".join(PROMPTS) + "\n\n")
    pairs = [("ab=", "aab", "cd"), ("c=", "cc", "ab"), ("dda=", "ad", "bbc")]
    (d / "pairs.jsonl").write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                                           for p, c, r in pairs))  # fmt: skip
    kind = "dpo" if algo == "dpo" else "ppo" if algo == "ppo" else "grpo"
    data = 'pairs = "pairs.jsonl"' if algo == "dpo" else 'prompts = "prompts.txt"'
    reward_table = "" if algo == "dpo" else f"[reward]\n{reward}\n"
    text = (f"steps = 4\ncheckpoint_every = 2\n{extra}\n"
            f'[model]\nalphabet = "{ALPHABET}"\ngpt = {{ block_size = 16, n_layer = 1, n_head = 2, n_embd = 16 }}\n'
            f"[data]\n{data}\n{reward_table}[config]\n{CONFIG[kind]}")  # fmt: skip
    (d / "run.toml").write_text(text)
    return str(d / "run.toml")


def rows(out, clock=False) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        found = list(csv.DictReader(f))
    for row in found if not clock else ():
        del row["wall_time"]  # the clock: the one column that differs between runs
    return found


def test_a_run_writes_metrics_and_its_run_file(tmp_path, capsys):
    config = write_run(tmp_path, "rloo")
    out = tmp_path / "run"
    assert cli.main(["rlhf", "train", "rloo", "--config", config, "--out", str(out), "--quiet",
                     "--group-size", "3"]) == 0  # fmt: skip
    got = rows(out)
    assert [r["step"] for r in got] == ["1", "2", "3", "4"]
    assert all(0 <= float(r["score"]) <= 1 for r in got)  # on_topic's range: the function was called
    assert {"metrics.csv", "learning_curve.png", "checkpoint.pt", "reference.pt", "run.toml"} <= {
        p.name for p in out.iterdir()}
    name, fields = run_config(out)
    # rloo is the GRPO trainer with that estimator; the flag overrode nothing else of the file's [config]
    assert name == "GRPOTrainer" and fields["advantage_estimator"] == "rloo"
    assert (fields["group_size"], fields["prompts_per_step"], fields["learning_rate"]) == (3, 2, 0.01)
    copy = (out / "run.toml").read_text()
    assert copy.startswith(f"config_dir = {json.dumps(str(tmp_path / 'spec'))}")
    assert copy.endswith((tmp_path / "spec" / "run.toml").read_text())
    assert f"wrote {out}/metrics.csv" in capsys.readouterr().out


@pytest.mark.parametrize("algo", ["grpo", "ppo", "dpo", "reinforce_pp"])
def test_a_resumed_run_equals_a_straight_one(tmp_path, algo):
    config = write_run(tmp_path, algo)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli.main(["rlhf", "train", algo, "--config", config, "--out", str(straight), "--quiet"]) == 0
    assert cli.main(["rlhf", "train", algo, "--config", config, "--out", str(resumed), "--quiet",
                     "--steps", "2"]) == 0  # fmt: skip
    first = rows(resumed, clock=True)
    assert len(first) == 2
    # the run directory's run.toml rebuilds the run (its relative paths resolve from config_dir)
    torch.manual_seed(999)  # another global RNG state: the run's own must come from its checkpoint
    assert cli.main(["rlhf", "train", algo, "--resume", str(resumed), "--steps", "4", "--quiet"]) == 0
    assert rows(resumed) == rows(straight)
    assert rows(resumed, clock=True)[:2] == first  # continued, not trained again from the start


def test_a_crashed_run_resumes_exactly(tmp_path, calls):
    config = write_run(tmp_path, "grpo")
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert cli.main(["rlhf", "train", "grpo", "--config", config, "--out", str(straight), "--quiet"]) == 0
    calls.update(count=0, crash_at=4)  # in step 4's rollout: steps 1-3 logged, the checkpoint is step 2's
    with pytest.raises(Crash):
        cli.main(["rlhf", "train", "grpo", "--config", config, "--out", str(crashed), "--quiet"])
    before = rows(crashed, clock=True)
    assert len(before) == 3
    calls.update(count=0, crash_at=None)
    assert cli.main(["rlhf", "train", "grpo", "--resume", str(crashed), "--quiet"]) == 0
    assert rows(crashed) == rows(straight)
    assert rows(crashed, clock=True)[:2] == before[:2] and calls["count"] == 2  # steps 3 and 4 alone


def test_sigterm_ends_the_run_after_the_step_with_a_checkpoint_it_resumes_from_exactly(tmp_path, calls, capsys):
    config = write_run(tmp_path, "grpo")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert cli.main(["rlhf", "train", "grpo", "--config", config, "--out", str(straight), "--quiet"]) == 0
    calls.update(count=0, sigterm_at=3)  # in step 3's rollout; the periodic checkpoint is step 2's
    capsys.readouterr()
    assert cli.main(["rlhf", "train", "grpo", "--config", config, "--out", str(stopped), "--quiet"]) == 143
    err = capsys.readouterr().err
    assert f"stopped by SIGTERM; wrote {stopped}/checkpoint.pt" in err and f"--resume {stopped}" in err
    assert run_config(stopped) and len(rows(stopped)) == 3 and (stopped / "learning_curve.png").is_file()
    calls.update(count=0, sigterm_at=None)
    assert cli.main(["rlhf", "train", "grpo", "--resume", str(stopped), "--quiet"]) == 0
    assert rows(stopped) == rows(straight) and calls["count"] == 1  # step 4 alone: step 3 was saved


def test_out_in_the_run_file_is_relative_to_it(tmp_path):
    config = write_run(tmp_path, "dpo", extra='out = "my-run"')
    assert cli.main(["rlhf", "train", "dpo", "--config", config, "--quiet", "--steps", "1"]) == 0
    assert len(rows(tmp_path / "spec" / "my-run")) == 1


def test_weighted_reward_functions(tmp_path):
    reward = ('functions = ["tests.rlhf.test_cli_train:length", "tests.rlhf.test_cli_train:on_topic"]\n'
              "weights = [0.0, 2.0]")
    config = write_run(tmp_path, "grpo", reward)
    out = tmp_path / "run"
    assert cli.main(["rlhf", "train", "grpo", "--config", config, "--out", str(out), "--quiet", "--steps", "2"]) == 0
    assert all(0 <= float(r["score"]) <= 2 for r in rows(out))  # length weighs nothing, on_topic twice


@pytest.mark.parametrize(("algo", "argv", "reward", "message", "extra"), [
    ("grpo", ["--prompts-per-step", "0"], None, "GRPOConfig.prompts_per_step must be >= 1, got 0", ""),
    ("rloo", ["--advantage-estimator", "grpo"], None, "--advantage-estimator grpo contradicts the algorithm rloo", ""),
    ("grpo", [], 'functions = ["tests.rlhf.test_cli_train"]', "must be \"module:function\"", ""),
    ("grpo", [], 'functions = ["tests.rlhf.no_such_module:f"]', "cannot import module 'tests.rlhf.no_such_module'",
     ""),
    ("grpo", [], 'functions = ["tests.rlhf.test_cli_train:missing"]', "has no 'missing'", ""),
    ("grpo", [], 'functions = ["tests.rlhf.test_cli_train:NOT_CALLABLE"]', "'NOT_CALLABLE' is a int, not a function",
     ""),
    ("grpo", [], 'functions = ["tests.rlhf.test_cli_train:on_topic"]\nweights = [1, 2]',
     "[reward] weights must be a list of 1 finite numbers", ""),
    ("grpo", [], 'model = "no_such_rm.pt"', "[reward] model: no such file or directory", ""),
    ("grpo", ["--steps", "0"], None, "--steps must be an int >= 1, got 0", ""),
    ("grpo", [], None, "device must be cpu or cuda, got 'tpu'", 'device = "tpu"'),
    ("grpo", [], None, "unknown key 'stpes'", "stpes = 3"),
    ("dpo", ["--beta", "0"], None, "DPOConfig.beta must be > 0", ""),
])  # fmt: skip
def test_bad_input_is_one_line_naming_it(tmp_path, capsys, algo, argv, reward, message, extra):
    config = write_run(tmp_path, algo, reward or 'functions = ["tests.rlhf.test_cli_train:on_topic"]', extra)
    out = tmp_path / "run"
    assert cli.main(["rlhf", "train", algo, "--config", config, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastrl rlhf train {algo}: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (out / "metrics.csv").exists()


def test_a_missing_prompts_file_is_one_line_naming_it(tmp_path, capsys):
    config = write_run(tmp_path, "grpo")
    (tmp_path / "spec" / "prompts.txt").unlink()
    assert cli.main(["rlhf", "train", "grpo", "--config", config, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"fastrl rlhf train grpo: [data] prompts: no such file: {tmp_path / 'spec' / 'prompts.txt'}\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["dqn"], "invalid choice: 'dqn'"),
    (["grpo", "--group-size", "two"], "--group-size: invalid int value: 'two'"),
])  # fmt: skip
def test_a_bad_command_line_is_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["rlhf", "train", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_resume_refuses_another_algorithm_and_a_changed_field(tmp_path, capsys):
    config = write_run(tmp_path, "rloo")
    out = tmp_path / "run"
    assert cli.main(["rlhf", "train", "rloo", "--config", config, "--out", str(out), "--quiet", "--steps", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["rlhf", "train", "grpo", "--resume", str(out)]) == 2
    assert "holds a rloo run (GRPOTrainer), not grpo" in capsys.readouterr().err
    assert cli.main(["rlhf", "train", "rloo", "--resume", str(out), "--learning-rate", "0.5"]) == 2
    assert "--learning-rate 0.5 (the run has 0.01)" in capsys.readouterr().err


def test_prompts_from_jsonl(tmp_path):
    from pathlib import Path

    from fastrl.cli.rlhf import read_prompts

    path = Path(tmp_path / "p.jsonl")
    path.write_text('{"prompt": "ab="}\n\n{"prompt": "c=", "id": 3}\n')
    # records with every key: the others are columns for the reward functions
    assert read_prompts(path) == [{"prompt": "ab=", "id": None}, {"prompt": "c=", "id": 3}]
    path.write_text('{"text": "ab="}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: each line must be an object with a non-empty string"):
        read_prompts(path)


def _with_data(config: str, data: str) -> str:
    """The run file with its [data] table's line replaced by ``data``."""
    from pathlib import Path

    path = Path(config)
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.startswith(("prompts =", "pairs =")))
    path.write_text(text.replace(line, data))
    return config


@pytest.mark.parametrize("algo", ["grpo", "dpo"])
def test_data_from_a_dataset_saved_to_disk_trains_as_the_file_does(tmp_path, algo):
    datasets = pytest.importorskip("datasets")
    config = write_run(tmp_path, algo)
    from_file = tmp_path / "from-file"
    assert cli.main(["rlhf", "train", algo, "--config", config, "--out", str(from_file), "--quiet",
                     "--steps", "2"]) == 0  # fmt: skip
    spec = tmp_path / "spec"
    if algo == "dpo":
        records = [json.loads(line) for line in (spec / "pairs.jsonl").read_text().splitlines()]
        rows_ = {k: [r[k] for r in records] for k in ("prompt", "chosen", "rejected")}
    else:
        rows_ = {"prompt": PROMPTS}
    single = datasets.Dataset.from_dict(rows_)
    single.save_to_disk(str(spec / "single"))
    datasets.DatasetDict({"train": single, "test": single.select([0])}).save_to_disk(str(spec / "splits"))
    key = "pairs" if algo == "dpo" else "prompts"
    for data in (f'{key} = "single"', f'{key} = "splits"\nsplit = "train"'):
        out = tmp_path / "run"
        assert cli.main(["rlhf", "train", algo, "--config", _with_data(config, data), "--out", str(out), "--quiet",
                         "--steps", "2", "--overwrite"]) == 0  # fmt: skip
        assert rows(out) == rows(from_file)  # the same records in the same order: the same run
    assert cli.main(["rlhf", "train", algo, "--resume", str(out), "--steps", "3", "--quiet"]) == 0
    assert len(rows(out)) == 3  # run.toml's copy names the directory and the split


@pytest.mark.parametrize(("data", "message"), [
    ('prompts = "splits"', "splits holds the splits train, test: name one with [data] split, e.g. split = 'train'"),
    ('prompts = "splits"\nsplit = "validation"', "splits has no split 'validation' (its splits: train, test)"),
    ('prompts = "single"\nsplit = "train"', "single holds one dataset, not splits: remove [data] split = 'train'"),
    ('prompts = "prompts.txt"\nsplit = "train"', "prompts.txt is a file: [data] split = 'train' names a split"),
    ('prompts = "plain"', "plain is a directory but no dataset saved with save_to_disk"),
    ('prompts = "no-prompt-column"', "no-prompt-column"),
    ('prompts = "single"\nsplit = 3', "[data] split must be a split's name (a string), got 3"),
])  # fmt: skip
def test_a_bad_dataset_directory_is_one_line_naming_it(tmp_path, capsys, data, message):
    datasets = pytest.importorskip("datasets")
    config = write_run(tmp_path, "grpo")
    spec = tmp_path / "spec"
    single = datasets.Dataset.from_dict({"prompt": PROMPTS})
    single.save_to_disk(str(spec / "single"))
    datasets.DatasetDict({"train": single, "test": single}).save_to_disk(str(spec / "splits"))
    datasets.Dataset.from_dict({"text": PROMPTS}).save_to_disk(str(spec / "no-prompt-column"))
    (spec / "plain").mkdir()
    (spec / "plain" / "notes.txt").write_text("not a dataset\n")
    out = tmp_path / "run"
    capsys.readouterr()  # datasets' progress bars
    assert cli.main(["rlhf", "train", "grpo", "--config", _with_data(config, data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrl rlhf train grpo: [data") and err.count("\n") == 1, err
    assert message in err, err
    assert not (out / "metrics.csv").exists()


def test_a_dataset_directory_without_the_datasets_package_says_what_to_install(tmp_path, monkeypatch):
    from fastrl.cli.rlhf import read_prompts

    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ValueError, match=r"is a directory: reading a dataset saved with save_to_disk needs the "
                                         r"datasets package \(the rlhf extra: pip install 'torch-fastrl\[rlhf\]'\)"):
        read_prompts(tmp_path)
