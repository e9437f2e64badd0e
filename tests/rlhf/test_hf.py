"""The transformers adapters, on tiny GPT-2 models built from a config (no download); skipped
without transformers."""

import logging
import math
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fastrl.nn.gpt import GPT, GPTConfig, ScalarGPT, generate  # noqa: E402
from fastrl.nn.hf import HFCausalLM, HFScalar  # noqa: E402
from fastrl.rlhf.data import Preference, encode_pairs, encode_prompts  # noqa: E402
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig  # noqa: E402
from fastrl.rlhf.reward_model import (  # noqa: E402
    HFRewardModel,
    RewardModel,
    RewardModelConfig,
    bradley_terry_loss,
    train_reward_model,
)
from tests.rlhf._tiny import CFG, PROMPTS, TOK, same_state, snapshot  # noqa: E402


def _tiny_gpt2(vocab=TOK.vocab_size):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    return HFCausalLM(transformers.GPT2LMHeadModel(config)).double()


def test_padding_and_kv_cache_sampling_match_full_recompute():
    model = _tiny_gpt2()
    torch.testing.assert_close(
        model(torch.tensor([[0, 0, 3, 4, 5]]), torch.tensor([[0, 0, 1, 1, 1]]).bool())[:, 2:],
        model(torch.tensor([[3, 4, 5]])),
    )
    ids, mask = encode_prompts(PROMPTS, TOK)
    runs = [generate(model, ids, mask, max_new_tokens=8, stop_token=TOK.eos_id, use_cache=cache,
                     generator=torch.Generator().manual_seed(0)) for cache in (True, False)]  # fmt: skip
    assert torch.equal(runs[0].ids, runs[1].ids)


def test_kv_cache_calls_use_no_deprecated_argument():
    # transformers 5.x renamed past_key_values to cache: the old name warns (a FutureWarning, and
    # a logged warning when the output's past_key_values is read) on every call
    model = _tiny_gpt2()
    ids, mask = encode_prompts(PROMPTS, TOK)
    warning_once = getattr(transformers.utils.logging, "warning_once", None)
    if warning_once is not None:
        warning_once.cache_clear()  # logged only once per process otherwise
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, cache = model.trunk(ids, mask)
            step = torch.ones(ids.shape[0], 1, dtype=torch.bool)
            hidden, _ = model.trunk(ids[:, -1:], torch.cat([mask, step], 1), cache)
            generate(model, ids, mask, max_new_tokens=3, generator=torch.Generator().manual_seed(0))
    finally:
        logger.removeHandler(handler)
    messages = [str(w.message) for w in caught] + [record.getMessage() for record in logged]
    assert not [m for m in messages if "deprecated" in m.lower()], messages
    # the cached step saw the cache: it equals the full recompute of the longer sequence
    full = model.hidden(torch.cat([ids, ids[:, -1:]], 1), torch.cat([mask, step], 1))[:, -1:]
    torch.testing.assert_close(hidden, full)


def test_ppo_runs_on_a_transformers_policy():
    policy = _tiny_gpt2().float()
    cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    reward_model = RewardModel(cfg).requires_grad_(False)
    with pytest.raises(ValueError, match="pass a critic"):
        PPOTrainer(policy, reward_model, TOK, RLHFPPOConfig())
    trainer = PPOTrainer(policy, reward_model, TOK, RLHFPPOConfig(batch_size=4, max_new_tokens=5),
                         critic=ScalarGPT(cfg))  # fmt: skip
    reference = snapshot(trainer.reference)
    ids, mask = encode_prompts(PROMPTS, TOK)
    history = [trainer.step(ids, mask)[0] for _ in range(2)]
    assert history[0]["kl"].item() == 0.0
    assert all(math.isfinite(v.item()) for m in history for v in m.values())
    assert same_state(trainer.reference, reference)


def test_mismatched_tokenizer_and_transformers_vocab():
    with pytest.raises(ValueError, match="tokenizer has 7 ids but the policy embeds only 5"):
        PPOTrainer(_tiny_gpt2(vocab=5), RewardModel(GPTConfig(vocab_size=7)), TOK, RLHFPPOConfig(),
                   critic=ScalarGPT(GPTConfig(vocab_size=7)))  # fmt: skip


def _word_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, "hello": 3, "world": 4, "again": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                               eos_token="<eos>", unk_token="<unk>")  # fmt: skip
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_transformers_tokenizer_from_a_local_directory(tmp_path):
    from fastrl.rlhf.tokenizer import HFTokenizer, Tokenizer

    tok = HFTokenizer(str(_word_tokenizer(tmp_path)))
    assert isinstance(tok, Tokenizer)
    assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (6, 0, 1)
    assert tok.encode("hello world") == [3, 4]
    assert tok.decode(torch.tensor([3, 5, 1, 0])) == "hello again"
    ids, mask = encode_prompts(["hello", "world again"], tok)
    assert ids.tolist() == [[0, 3], [4, 5]] and mask.tolist() == [[False, True], [True, True]]


def _tiny_classifier(path, vocab=TOK.vocab_size, num_labels=1, pad_token_id=TOK.pad_id):
    """A tiny GPT-2 sequence classifier saved to ``path``, as a user's local checkpoint."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     num_labels=num_labels, pad_token_id=pad_token_id)  # fmt: skip
    transformers.GPT2ForSequenceClassification(config).save_pretrained(path)
    return path


def _pad(rows, fill, side):
    width = max(map(len, rows))
    pad = [[fill] * (width - len(r)) for r in rows]
    ids = [p + r if side == "left" else r + p for p, r in zip(pad, rows)]
    mask = [[0] * len(p) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * len(p) for p, r in zip(pad, rows)]
    return torch.tensor(ids), torch.tensor(mask).bool()


@pytest.mark.parametrize("pad_id", [TOK.pad_id, TOK.eos_id])
def test_reward_model_reads_the_last_real_token_for_either_padding_side(tmp_path, pad_id):
    path = str(_tiny_classifier(tmp_path, pad_token_id=pad_id))
    rm = HFRewardModel.from_pretrained(path).double()
    # the reference: the classifier on each sequence alone, its head on the last token
    plain = transformers.GPT2ForSequenceClassification.from_pretrained(path, local_files_only=True,
                                                                       pad_token_id=None).double()  # fmt: skip
    rows = [[2, 3, 4, 1], [5, 1], [6, 6, 2, 3, 5, 1]]  # responses end in EOS (1)
    alone = torch.cat([plain(input_ids=torch.tensor([r])).logits[:, 0] for r in rows])
    for side in ("left", "right"):
        ids, mask = _pad(rows, pad_id, side)
        torch.testing.assert_close(rm(ids, mask), alone)
        if pad_id == TOK.eos_id:
            # a tokenizer that pads with EOS (HFTokenizer without a pad token): the classifier's
            # own pooling looks for the last id that is not the pad id, so it stops before the EOS
            native = rm.hf(input_ids=ids, attention_mask=mask.long()).logits[:, 0]
            assert not torch.allclose(native, alone)
    assert rm(ids, mask).shape == (3,) and rm(ids, mask).dtype == torch.float64
    # per-token values (a critic): the value at column k is the classifier's score of the prefix
    seq = torch.tensor([rows[2]])
    prefixes = torch.cat([plain(input_ids=seq[:, : k + 1]).logits[:, 0] for k in range(seq.shape[1])])
    torch.testing.assert_close(HFScalar(rm.hf)(seq)[0], prefixes)


def test_reward_model_saves_its_statistics_with_the_classifier(tmp_path):
    rm = HFRewardModel.from_pretrained(str(_tiny_classifier(tmp_path / "init")))
    rm.mean.fill_(0.5)
    rm.std.fill_(2.0)
    rm.save_pretrained(tmp_path / "trained")
    loaded = HFRewardModel.from_pretrained(str(tmp_path / "trained"))
    assert (loaded.mean.item(), loaded.std.item()) == (0.5, 2.0)
    ids, mask = _pad([[2, 3, 1], [4, 1]], TOK.pad_id, "left")
    torch.testing.assert_close(loaded.normalized(ids, mask), (rm(ids, mask) - 0.5) / 2.0)


def test_reward_model_errors(tmp_path):
    with pytest.raises(ValueError, match="num_labels=2"):
        HFRewardModel.from_pretrained(str(_tiny_classifier(tmp_path / "two", num_labels=2)))
    with pytest.raises(ValueError, match="not a decoder-only sequence classifier"):
        HFRewardModel(_tiny_gpt2().hf)
    rm = HFRewardModel.from_pretrained(str(_tiny_classifier(tmp_path / "small", vocab=5)))
    with pytest.raises(ValueError, match="tokenizer has 7 ids but the reward model embeds only 5"):
        train_reward_model(rm, _more_a_pairs(10), TOK, RewardModelConfig())
    with pytest.raises(ValueError, match="tokenizer has 7 ids but the reward model embeds only 5"):
        GRPOTrainer(GPT(CFG), rm, TOK, GRPOConfig())


def _more_a_pairs(n, seed=0):
    """Raters prefer responses with more 'a's."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        hi, lo = sorted(torch.randperm(6, generator=g)[:2].tolist(), reverse=True)
        pairs.append(Preference("c=", "a" * hi + "b" * (6 - hi), "a" * lo + "b" * (6 - lo), source=f"pair {i}"))
    return pairs


def test_bradley_terry_training_of_a_transformers_reward_model(tmp_path):
    rm = HFRewardModel.from_pretrained(str(_tiny_classifier(tmp_path)))
    pairs = _more_a_pairs(64)
    data = encode_pairs(pairs, TOK, rm.cfg.block_size)
    with torch.no_grad():
        before = bradley_terry_loss(rm(data.chosen, data.chosen_mask), rm(data.rejected, data.rejected_mask))
    cfg = RewardModelConfig(epochs=4, batch_size=16, learning_rate=3e-3, eval_fraction=0)
    metrics = train_reward_model(rm, pairs, TOK, cfg)
    with torch.no_grad():
        after = bradley_terry_loss(rm(data.chosen, data.chosen_mask), rm(data.rejected, data.rejected_mask))
    assert after.item() < 0.7 * before.item()
    assert metrics["train_accuracy"] > 0.8 and metrics["std"] > 0
    assert not rm.training and rm.std.item() == pytest.approx(metrics["std"])


def test_ppo_and_grpo_run_with_a_transformers_reward_model(tmp_path):
    rm = HFRewardModel.from_pretrained(str(_tiny_classifier(tmp_path))).requires_grad_(False)
    ids, mask = encode_prompts(PROMPTS, TOK)
    torch.manual_seed(0)
    # all three from transformers: the policy, the reward model, and a classifier as the critic
    policy = _tiny_gpt2().float()
    critic = HFScalar.from_pretrained(str(tmp_path))
    ppo = PPOTrainer(policy, rm, TOK, RLHFPPOConfig(batch_size=4, max_new_tokens=5), critic=critic)
    grpo = GRPOTrainer(GPT(CFG), rm, TOK, GRPOConfig(prompts_per_step=4, group_size=2, max_new_tokens=5))
    rm_state = snapshot(rm)
    for trainer in (ppo, grpo):
        metrics, gen = trainer.step(ids, mask)
        assert metrics["kl"].item() == 0.0
        assert all(math.isfinite(v.item()) for v in metrics.values())
        torch.testing.assert_close(metrics["score"], rm.normalized(gen.ids, gen.mask).mean())
    assert same_state(rm, rm_state)
