"""The RLHF demo under a 2-process gloo job (issue 15): every stage is the algorithm of one process.
SFT, the labeled pairs and the reward model equal one process's exactly on both ranks; DPO's run
(its metrics.csv and weights) equals one process's to float rounding; GRPO's ranks end with equal
weights (their sampling noise is their own, so its run is one process's in distribution only:
docs/distributed.md gives the default-size numbers). And the real command,
`torchrun --standalone --nproc-per-node=2 -m fastrl rlhf demo --algo grpo`, writes one run."""

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from fastrl.rlhf import demo

from ._launch import run_ranks

TINY = dict(sft_examples=200, sft_steps=3, preference_prompts=300, rl_prompts=50, iterations=3, eval_prompts=16,
            log_every=2, reward=demo.RewardModelConfig(epochs=1, eval_fraction=0.1),
            dpo=demo.DPOConfig(epochs=2, batch_size=64))  # fmt: skip


def _config(algo, out):
    cfg = demo.DemoConfig(algo=algo, out=str(out), **TINY)
    return replace(cfg, grpo=replace(cfg.grpo, prompts_per_step=4, group_size=2))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _demo(rank, algo, out):
    cfg = _config(algo, out)
    prep = demo.prepare(cfg)
    prepared = {"sft": _state(prep.policy), "pairs": prep.pairs, "sft_score": prep.sft_score,
                "reward_model": None if prep.reward_model is None else _state(prep.reward_model),
                "reward_metrics": prep.reward_metrics}  # fmt: skip
    # spies: the mean hidden score of each generation this rank scores, and the loggers it opens
    scored, loggers = [], []
    hidden_scores, run_logger = demo.hidden_scores, demo.RunLogger
    demo.hidden_scores = lambda gen: scored.append(hidden_scores(gen).mean().item()) or hidden_scores(gen)
    demo.RunLogger = lambda *args, **kwargs: loggers.append(args) or run_logger(*args, **kwargs)
    try:
        summary = demo.run_rl(cfg, prep)
    finally:
        demo.hidden_scores, demo.RunLogger = hidden_scores, run_logger
    return {"prepared": prepared, "summary": summary, "policy": _state(prep.policy), "scored": scored,
            "loggers": len(loggers)}


def _rows(out):
    with open(out / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


@pytest.mark.parametrize("algo", ["grpo", "dpo"])
def test_demo_on_two_ranks_is_one_process_run(tmp_path, algo):
    torch.set_num_threads(1)
    single = _demo(0, algo, tmp_path / "one")
    ranks = run_ranks(_demo, timeout=240, algo=algo, out=tmp_path / "two")
    one = single["prepared"]
    for rank in ranks:  # SFT, labeling and reward model: those of one process, exactly
        got = rank["prepared"]
        assert got["pairs"] == one["pairs"] and got["sft_score"] == one["sft_score"]
        assert got["reward_metrics"] == one["reward_metrics"]
        for model in ("sft", "reward_model"):
            if one[model] is not None:
                for name, value in one[model].items():
                    torch.testing.assert_close(got[model][name], value, rtol=0, atol=0, msg=f"{model}: {name}")
    for name, value in ranks[0]["policy"].items():  # the ranks end with the same weights
        torch.testing.assert_close(ranks[1]["policy"][name], value, rtol=0, atol=0, msg=name)
    two_rows, one_rows = _rows(tmp_path / "two"), _rows(tmp_path / "one")
    steps = ranks[0]["summary"]["steps"]
    assert len(two_rows) == len(one_rows) == steps  # one row a step
    assert [rank["loggers"] for rank in ranks] == [1, 0]  # written by rank 0 alone
    if algo != "dpo":  # the logged hidden score is the job's: the mean of the ranks' (as many responses each)
        logged = [float(row["hidden_score"]) for row in two_rows]
        expected = [(a + b) / 2 for a, b in zip(ranks[0]["scored"][:steps], ranks[1]["scored"][:steps], strict=True)]
        assert logged == pytest.approx(expected, rel=1e-6)
        assert ranks[0]["scored"][:steps] != ranks[1]["scored"][:steps]  # the ranks' halves differ
    assert ranks[0]["summary"] == ranks[1]["summary"]  # rank 0's, sent to every rank
    written = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert {k: v for k, v in written.items() if "seconds" not in k} == {
        k: v for k, v in ranks[0]["summary"].items() if "seconds" not in k}
    if algo == "dpo":  # no sampling: the run of one process, to float rounding
        for step, (a, b) in enumerate(zip(two_rows, one_rows)):
            assert {k: float(v) for k, v in a.items()} == pytest.approx(
                {k: float(v) for k, v in b.items()}, rel=1e-4, abs=1e-5), f"step {step}"
        for name, value in single["policy"].items():
            torch.testing.assert_close(ranks[0]["policy"][name], value, rtol=1e-3, atol=1e-4, msg=name)
        for key in ("final_hidden_score", "final_kl"):
            assert ranks[0]["summary"][key] == pytest.approx(single["summary"][key], rel=1e-3, abs=1e-3), key


TORCHRUN_FLAGS = ["rlhf", "demo", "--algo", "grpo", "--sft-examples", "200", "--sft-steps", "3",
                  "--preference-prompts", "300", "--reward-epochs", "1", "--rl-prompts", "50", "--iterations", "3",
                  "--eval-prompts", "16", "--grpo-prompts-per-step", "4", "--grpo-group-size", "2"]  # fmt: skip


def test_torchrun_rlhf_demo_writes_one_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "fastrl", *TORCHRUN_FLAGS, "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=240, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"gap_closed"') == 1  # rank 0 alone reports
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["algo"] == "grpo" and summary["steps"] == 3
    assert len(_rows(tmp_path / "run")) == 3
    # a second run into the same directory is refused on every rank, not left hanging
    again = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                            "-m", "fastrl", *TORCHRUN_FLAGS, "--out", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert again.returncode != 0 and "already holds a run" in again.stderr
