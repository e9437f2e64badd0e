"""``fastrl rlhf train`` on a local ``transformers`` directory (a tiny GPT-2 and a word-level
tokenizer saved there, no download): GRPO against a reward function, PPO with the directory's own
classifier as critic against a reward-model directory; skipped without transformers."""

from __future__ import annotations

import csv

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fastrl import cli  # noqa: E402
from tests.rlhf.test_hf import _tiny_classifier, _word_tokenizer  # noqa: E402


def length(prompts, completions):
    return [float(len(c.split())) for c in completions]


def _model_dir(tmp_path):
    path = _word_tokenizer(tmp_path / "model")  # 6 ids: <pad> 0, <eos> 1, <unk>, hello, world, again
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=6, n_positions=32, n_embd=16, n_layer=1, n_head=2, pad_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_a_transformers_directory_trains_and_is_saved(tmp_path, algo):
    _model_dir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hello"}\n{"prompt": "world again"}\n')
    if algo == "ppo":
        _tiny_classifier(tmp_path / "rm", vocab=6, pad_token_id=0)
        reward, config = 'model = "rm"', "batch_size = 2\nmax_new_tokens = 3"
    else:
        reward = 'functions = ["tests.rlhf.test_cli_train_hf:length"]'
        config = "prompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 3"
    (tmp_path / "run.toml").write_text(f'steps = 2\n[model]\ntransformers = "model"\n'
                                       f'[data]\nprompts = "prompts.jsonl"\n[reward]\n{reward}\n[config]\n{config}\n')
    out = tmp_path / "run"
    assert cli.main(["rlhf", "train", algo, "--config", str(tmp_path / "run.toml"), "--out", str(out), "--quiet"]) == 0
    with open(out / "metrics.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2"]
    saved = transformers.GPT2LMHeadModel.from_pretrained(out / "policy", local_files_only=True)
    start = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "model", local_files_only=True)
    assert not torch.equal(saved.transformer.wte.weight, start.transformer.wte.weight)  # it trained
    assert (out / "policy" / "tokenizer.json").is_file()
    assert (out / "critic").is_dir() == (algo == "ppo")
