"""``fastrl.rlhf.sharding`` on one process: which modules are a model's transformer blocks, and
which models ``fsdp=True`` refuses (the 2-process FSDP2 tests are in tests/distributed/test_fsdp.py)."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from fastrl.nn.hf import HFCausalLM, HFScalar  # noqa: E402
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig  # noqa: E402
from fastrl.rlhf.sharding import gathered, is_sharded, shard, transformer_blocks  # noqa: E402
from fastrl.utils.config import ConfigError  # noqa: E402
from tests.rlhf._tiny import TOK, tiny_models  # noqa: E402


def _gpt2(**extra):
    config = transformers.GPT2Config(vocab_size=TOK.vocab_size, n_positions=32, n_embd=16, n_layer=3, n_head=2,
                                     **extra)  # fmt: skip
    return config


def test_blocks_of_gpt2_and_llama_are_their_layer_lists():
    torch.manual_seed(0)
    lm = HFCausalLM(transformers.GPT2LMHeadModel(_gpt2()))
    assert transformer_blocks(lm) == list(lm.hf.transformer.h)
    critic = HFScalar(transformers.GPT2ForSequenceClassification(_gpt2(num_labels=1)))
    assert transformer_blocks(critic) == list(critic.hf.transformer.h)
    llama = transformers.LlamaConfig(vocab_size=TOK.vocab_size, hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                     max_position_embeddings=32)  # fmt: skip
    lm = HFCausalLM(transformers.LlamaForCausalLM(llama))
    assert transformer_blocks(lm) == list(lm.hf.model.layers)


def test_blocks_without_no_split_modules_are_the_largest_list_of_one_class():
    class Model(nn.Module):  # no _no_split_modules: a small list of heads and a bigger one of blocks
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList(nn.Linear(2, 1) for _ in range(2))
            self.mixed = nn.ModuleList([nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8)])
            self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    model = Model()
    assert transformer_blocks(model) == list(model.layers)
    with pytest.raises(ValueError, match="Sequential has no transformer blocks to shard"):
        transformer_blocks(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


def test_fsdp_refuses_fastrls_own_gpt():
    policy, reward_model = tiny_models()
    with pytest.raises(ValueError, match="fastrl's own GPT trains data-parallel"):
        shard(policy)
    with pytest.raises(ConfigError, match=r"GRPOConfig.fsdp: shards transformers models .* not fastrl's own GPT") as e:
        GRPOTrainer(policy, reward_model, TOK, GRPOConfig(fsdp=True))
    assert e.value.field == "fsdp"
    with pytest.raises(ConfigError, match=r"RLHFPPOConfig.fsdp: .* not fastrl's own GPT"):
        PPOTrainer(policy, reward_model, TOK, RLHFPPOConfig(fsdp=True))


def test_fsdp_on_one_process_trains_unsharded():
    torch.manual_seed(0)
    policy = HFCausalLM(transformers.GPT2LMHeadModel(_gpt2()))
    trainer = GRPOTrainer(policy, lambda prompts, completions: [1.0] * len(prompts), TOK,
                          GRPOConfig(fsdp=True, prompts_per_step=2, group_size=2))  # fmt: skip
    assert not trainer.sharded and not is_sharded(policy)
    assert trainer.checkpointed()["policy"] is policy


def test_transformers_wrappers_take_an_empty_batch():
    """A rank's share of a minibatch may be empty; it still runs the forward and backward with the
    other ranks (FSDP's collectives), so every parameter gets a gradient of 0, not None. GPT-2
    itself refuses a batch of 0 rows."""
    torch.manual_seed(0)
    lm = HFCausalLM(transformers.GPT2LMHeadModel(_gpt2()))
    critic = HFScalar(transformers.GPT2ForSequenceClassification(_gpt2(num_labels=1)))
    ids, mask = torch.zeros(0, 5, dtype=torch.long), torch.ones(0, 5, dtype=torch.bool)
    hidden = lm.hidden(ids, mask)
    values = critic(ids, mask)
    assert hidden.shape == (0, 5, 16) and values.shape == (0, 5)
    (hidden.sum() + values.sum()).backward()
    for model in (lm, critic):
        for name, p in model.named_parameters():
            assert p.grad is not None and not p.grad.any(), name


@pytest.fixture
def one_process_group():
    """A gloo group of one process: FSDP2 shards over it as over many (each rank's shard is all)."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already joined")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("reshard_after_forward", [True, False])
def test_gathered_gathers_every_block_then_restores_resharding(one_process_group, reshard_after_forward):
    from torch.distributed.tensor import DTensor

    torch.manual_seed(0)
    lm = HFCausalLM(transformers.GPT2LMHeadModel(_gpt2()))
    expected = lm.hidden(torch.tensor([[1, 2, 3]]))
    shard(lm, reshard_after_forward=reshard_after_forward)
    assert is_sharded(lm) and all(is_sharded(block) for block in lm.hf.transformer.h)
    block = lm.hf.transformer.h[0].attn.c_attn
    assert isinstance(block.weight, DTensor)  # sharded until a forward gathers it
    with gathered(lm):
        assert not isinstance(block.weight, DTensor)  # every block gathered before any forward
        torch.testing.assert_close(lm.hidden(torch.tensor([[1, 2, 3]])), expected)
        assert not isinstance(block.weight, DTensor)  # and kept after one
    assert isinstance(block.weight, DTensor)
    lm.hidden(torch.tensor([[1, 2, 3]]))
    # after a forward: resharded again, or still gathered as shard() was told
    assert isinstance(block.weight, DTensor) == reshard_after_forward
