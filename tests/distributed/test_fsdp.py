"""FSDP2 (``fsdp=True``) for a ``transformers`` policy under a 2-process gloo job (issue 15): the
sharded update equals one process's update on the whole batch, and a sharded run writes a
checkpoint and ``save_pretrained`` directories that load on one process. The oracle is the
unsharded trainer on one process; the sharded parameters, gradients and optimizer state are
gathered with ``DTensor.full_tensor`` (not the checkpoint code under test) to compare.

torch 2.13's FSDP2 averages the gradients over gloo correctly (the bug of pytorch#162338, summed
gradients, would double the SGD step here and fail the comparison)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fastrl.nn.hf import HFCausalLM, HFScalar  # noqa: E402
from fastrl.rlhf.data import encode_prompts  # noqa: E402
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig  # noqa: E402
from fastrl.rlhf.rollout import select_rows  # noqa: E402
from fastrl.rlhf.run import load_run  # noqa: E402
from fastrl.rlhf.sharding import is_sharded  # noqa: E402
from fastrl.utils.checkpoint import CheckpointError  # noqa: E402
from tests.rlhf._tiny import PROMPTS as TEXTS  # noqa: E402
from tests.rlhf._tiny import TOK  # noqa: E402

from ._launch import run_ranks  # noqa: E402
from .test_rlhf import GROUP, LENGTHS, PROMPTS, RESPONSE_LEN, _generation  # noqa: E402

CASES = {
    "single-pass": dict(normalize="token_mean", epochs=1, num_minibatches=1),
    # several forwards and backwards, ratios off 1 in the second epoch, unequal (and empty) shares
    "minibatches": dict(normalize="seq_mean_token_mean", epochs=2, num_minibatches=3),
}


def _gpt2(seed=1):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=TOK.vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    return HFCausalLM(transformers.GPT2LMHeadModel(config))


def _gpt2_critic(seed=2):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=TOK.vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     num_labels=1, pad_token_id=TOK.pad_id)  # fmt: skip
    return HFScalar(transformers.GPT2ForSequenceClassification(config))


def _whole(model, prefix="") -> dict[str, torch.Tensor]:
    """Every parameter and gradient of ``model``, gathered whole (sharded: DTensor.full_tensor, a
    collective every rank runs)."""
    full = lambda t: t.full_tensor() if hasattr(t, "full_tensor") else t  # noqa: E731
    out = {prefix + k: full(p.detach()).clone() for k, p in model.named_parameters()}
    out |= {f"{prefix}{k}.grad": full(p.grad).clone() for k, p in model.named_parameters() if p.grad is not None}
    return out


def _grpo_update(rank, fsdp, cases):
    """Each case's parameters and gradients after one update of a fresh trainer on this rank's
    prompts (all of them on one process). SGD, whose step shows the gradient's scale."""
    gen, scores = _generation()
    out = {}
    for case in cases:
        policy = _gpt2()
        cfg = GRPOConfig(prompts_per_step=PROMPTS, group_size=GROUP, max_new_tokens=RESPONSE_LEN, kl_coef=0.1,
                         learning_rate=1e-2, max_grad_norm=100.0, seed=3, fsdp=fsdp, **CASES[case])  # fmt: skip
        trainer = GRPOTrainer(policy, lambda prompts, completions: [0.0] * len(prompts), TOK, cfg)
        assert is_sharded(policy) == (fsdp and trainer.world.distributed)
        trainer.opt = torch.optim.SGD(policy.parameters(), lr=0.5)  # over the shards when sharded
        rows = torch.arange(trainer.prompt_shard.start * GROUP, trainer.prompt_shard.stop * GROUP)
        metrics = trainer.update(select_rows(gen, rows), scores[rows])
        out[case] = (_whole(policy), {k: v.item() for k, v in metrics.items()})
    return out


def _ppo_update(rank, fsdp, cases):
    """As :func:`_grpo_update` for RLHF-PPO with a transformers critic: policy and critic."""
    gen, _ = _generation([max(n, 1) for n in LENGTHS])  # PPO's rewards need a last token in every response
    out = {}
    for case in cases:
        policy, critic = _gpt2(), _gpt2_critic()
        cfg = RLHFPPOConfig(batch_size=PROMPTS * GROUP, max_new_tokens=RESPONSE_LEN, kl_coef=0.1, seed=3,
                            max_grad_norm=100.0, fsdp=fsdp, epochs=CASES[case]["epochs"],
                            num_minibatches=CASES[case]["num_minibatches"])  # fmt: skip
        trainer = PPOTrainer(policy, lambda prompts, completions: [0.3 * len(c) for c in completions], TOK, cfg,
                             critic=critic)  # fmt: skip
        trainer.policy_opt = torch.optim.SGD(policy.parameters(), lr=0.5)
        trainer.critic_opt = torch.optim.SGD(critic.parameters(), lr=0.02)
        rows = torch.arange(trainer.prompt_shard.start, trainer.prompt_shard.stop)
        metrics = trainer.update(select_rows(gen, rows))
        out[case] = (_whole(policy, "policy.") | _whole(critic, "critic."), {k: v.item() for k, v in metrics.items()})
    return out


def _assert_same(single, ranks):
    for case, (params, metrics) in single.items():
        for rank in ranks:
            got_params, got_metrics = rank[case]
            assert got_params.keys() == params.keys()
            for name, value in params.items():
                torch.testing.assert_close(got_params[name], value, rtol=1e-4, atol=1e-5, msg=f"{case}: {name}")
            for name, value in metrics.items():
                assert got_metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-5), f"{case}: {name}"


@pytest.mark.parametrize("update", [_grpo_update, _ppo_update], ids=["grpo", "ppo"])
def test_sharded_update_on_two_ranks_equals_one_process(update):
    torch.set_num_threads(1)
    single = update(0, fsdp=False, cases=list(CASES))
    ranks = run_ranks(update, timeout=180, fsdp=True, cases=list(CASES))
    _assert_same(single, ranks)
    start = _whole(_gpt2(), "policy." if update is _ppo_update else "")
    for case, (params, _) in single.items():  # the step moved the policy (a no-op would pass trivially)
        assert any(not torch.allclose(start[k], params[k]) for k in start), case


def _eager_to_stop(policy, eos_logit=1.5):
    """As tests.rlhf._tiny.eager_to_stop for GPT-2: EOS about 0.4 per token, so that the ranks'
    batches stop after different numbers of tokens."""
    with torch.no_grad():
        eos = policy.lm_head.weight[TOK.eos_id]
        policy.hf.transformer.ln_f.weight.mul_(0.3)
        policy.hf.transformer.ln_f.bias.copy_(eos_logit * eos / eos.dot(eos))
    return policy


def _run_trainer(policy) -> GRPOTrainer:
    # seed 5: the ranks' first batches stop after different numbers of tokens
    cfg = GRPOConfig(prompts_per_step=PROMPTS, group_size=GROUP, max_new_tokens=8, num_minibatches=2, seed=5,
                     learning_rate=1e-2, fsdp=True)  # fmt: skip
    return GRPOTrainer(policy, lambda prompts, completions: [float(len(c)) for c in completions], TOK, cfg)


def _sharded_run(rank, out_dir):
    """Two logged steps of a sharded GRPO run (sampling included), checkpointed after each; the
    gathered parameters, AdamW state by parameter name, and the responses' lengths."""
    policy = _eager_to_stop(_gpt2())
    trainer = _run_trainer(policy)
    lengths = []
    trainer.train(TEXTS, 2, out_dir=out_dir, checkpoint_every=1,
                  on_step=lambda it, metrics, gen: lengths.append(gen.ids.shape[1] - gen.prompt_len))  # fmt: skip
    out = {"params": _whole(policy), "adam": _adam(trainer), "lengths": lengths}
    # the run loads back into a sharded trainer (every rank reads the file rank 0 wrote)
    torch.distributed.barrier()
    loaded = _run_trainer(_gpt2(seed=9))
    assert load_run(loaded, out_dir) == 2
    out["loaded"] = (_whole(loaded.policy), _adam(loaded), _whole(loaded.reference))
    return out


def _adam(trainer) -> dict[str, torch.Tensor]:
    """AdamW's moments by parameter name, gathered."""
    names = {p: k for k, p in trainer.policy.named_parameters()}
    return {f"{names[p]}.{key}": value.full_tensor() for p, state in trainer.opt.state.items()
            for key, value in state.items() if key != "step"}  # fmt: skip


def test_sharded_run_saves_what_one_process_loads(tmp_path):
    """A 2-rank sharded run: both ranks end with the same weights; its checkpoint's states load
    into a trainer on one process (the parameters and AdamW's moments the ranks held), which trains
    on (resuming the run itself takes 2 processes);
    reference.pt holds the starting weights, policy/ the final ones (save_pretrained). It loads
    back into sharded trainers too."""
    torch.set_num_threads(1)
    ranks = run_ranks(_sharded_run, timeout=240, out_dir=tmp_path)
    params = ranks[0]["params"]
    for name, value in params.items():
        torch.testing.assert_close(ranks[1]["params"][name], value, rtol=0, atol=0)
    start = {k: v.detach() for k, v in _eager_to_stop(_gpt2()).named_parameters()}
    weights = {k: v for k, v in params.items() if not k.endswith(".grad")}
    for rank in ranks:
        loaded_params, loaded_adam, reference = rank["loaded"]
        for got, want in ((loaded_params, weights), (loaded_adam, ranks[0]["adam"]), (reference, start)):
            assert got.keys() == want.keys()
            for name, value in want.items():
                torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    # the ranks sampled responses of different lengths, without a collective per token
    assert ranks[0]["lengths"] != ranks[1]["lengths"], (ranks[0]["lengths"], ranks[1]["lengths"])

    policy = _gpt2(seed=9)  # other weights: the checkpoint must replace them
    trainer = _run_trainer(policy)  # fsdp=True on one process: unsharded
    with pytest.raises(CheckpointError, match="written by 2 process"):  # resuming needs 2 again
        load_run(trainer, tmp_path)
    # but its states are whole, one process's: they load as they are
    modules = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["modules"]
    for name, obj in trainer.checkpointed().items():
        obj.load_state_dict(modules[name])
    for name, p in policy.named_parameters():
        torch.testing.assert_close(p.detach(), params[name], rtol=0, atol=0, msg=name)
    names = {p: k for k, p in policy.named_parameters()}
    loaded = {f"{names[p]}.{key}": value for p, state in trainer.opt.state.items()
              for key, value in state.items() if key != "step"}  # fmt: skip
    assert loaded.keys() == ranks[0]["adam"].keys() and loaded
    for name, value in ranks[0]["adam"].items():
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0, msg=name)
    trainer.step(*encode_prompts(TEXTS, TOK))  # the loaded optimizer steps

    reference = torch.load(tmp_path / "reference.pt", weights_only=False)["reference"]
    for name, p in start.items():
        torch.testing.assert_close(reference[name], p, rtol=0, atol=0, msg=name)
    saved = HFCausalLM.from_pretrained(str(tmp_path / "policy"))
    for name, p in saved.named_parameters():
        torch.testing.assert_close(p.detach(), params[name], rtol=0, atol=0, msg=name)


def _sharded_ppo_run(rank, out_dir):
    """One logged step of a sharded RLHF-PPO run; the gathered policy and critic."""
    policy, critic = _gpt2(), _gpt2_critic()
    cfg = RLHFPPOConfig(batch_size=PROMPTS, max_new_tokens=4, seed=3, fsdp=True)
    trainer = PPOTrainer(policy, lambda prompts, completions: [0.3 * len(c) for c in completions], TOK, cfg,
                         critic=critic)  # fmt: skip
    assert is_sharded(critic)
    trainer.train(TEXTS, 1, out_dir=out_dir)
    return _whole(policy, "policy.") | _whole(critic, "critic.")


def test_sharded_ppo_run_saves_policy_and_critic_whole(tmp_path):
    torch.set_num_threads(1)
    params = run_ranks(_sharded_ppo_run, timeout=180, out_dir=tmp_path)[0]
    modules = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["modules"]
    for name, model in (("policy", HFCausalLM), ("critic", HFScalar)):
        saved = model.from_pretrained(str(tmp_path / name))
        for key, p in saved.named_parameters():
            torch.testing.assert_close(p.detach(), params[f"{name}.{key}"], rtol=0, atol=0, msg=key)
            torch.testing.assert_close(modules[name][key], params[f"{name}.{key}"], rtol=0, atol=0, msg=key)
    assert modules["critic_optimizer"]["state"]  # AdamW's moments of the critic, gathered
