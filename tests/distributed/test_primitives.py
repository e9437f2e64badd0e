"""fastrl.distributed on one process (the identity) and on a 2-process gloo job (global values)."""

import datetime
import statistics

import pytest
import torch

from fastrl import distributed
from fastrl.distributed import World

from ._launch import run_ranks

DATA = torch.tensor([3.0, -1.0, 4.0, 1.5, -5.0, 9.0, 2.0, 6.5])
KEEP = torch.tensor([True, True, False, True, True, True, False, True])
SPLIT = 3  # rank 0 holds DATA[:3], rank 1 DATA[3:]: unequal counts on purpose


@pytest.fixture
def single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def test_one_process_is_the_identity(single_process):
    assert distributed.init() == World() and not World().distributed and World().is_main
    assert distributed.shard(6) == range(6)
    total, count = distributed.global_sum(torch.tensor([1.5, 2.0]), torch.tensor(3))
    assert total.tolist() == [1.5, 2.0] and count.dtype == torch.int64 and count.item() == 3
    mean, var, count = distributed.global_moments(DATA, KEEP)
    kept = DATA[KEEP].tolist()
    assert mean.item() == pytest.approx(statistics.fmean(kept)) and count.item() == len(kept)
    assert var.item() == pytest.approx(statistics.pvariance(kept))
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([1.0, 2.0])
    distributed.average_gradients([p])
    assert p.grad.tolist() == [1.0, 2.0]
    assert distributed.gather_objects("a") == ["a"] and distributed.broadcast_object("b") == "b"
    assert distributed.rank_device("cuda") == torch.device("cuda")  # no torchrun: left as given
    assert distributed.all_gather_cat(DATA) is DATA and distributed.launched_rank() == 0
    kept = DATA[KEEP].tolist()
    whitened = distributed.whiten(DATA, KEEP)
    mean, std = statistics.fmean(kept), (statistics.pvariance(kept) + 1e-8) ** 0.5
    assert whitened.tolist() == pytest.approx([(x - mean) / std if k else 0.0 for x, k in zip(DATA.tolist(),
                                                                                            KEEP.tolist())], rel=1e-6)


@pytest.mark.parametrize("total, size", [(8, 1), (8, 2), (12, 4), (1024, 8)])
def test_shards_cover_every_item_once_in_rank_order(total, size):
    shards = [distributed.shard(total, World(rank, size)) for rank in range(size)]
    assert [i for s in shards for i in s] == list(range(total))
    assert {len(s) for s in shards} == {total // size}


def test_a_total_that_does_not_divide_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"num_envs = 10 must be a multiple of the number of processes \(4\)"):
        distributed.shard(10, World(0, 4))
    with pytest.raises(ValueError, match=r"batch_size = 3 must"):
        distributed.shard(3, World(1, 2), name="batch_size")


def _statistics(rank):
    world = distributed.init()
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    mean, var, count = distributed.global_moments(DATA[part], KEEP[part])
    (ints,) = distributed.global_sum(torch.tensor([rank + 1, 10]))
    return dict(world=world, mean=mean.item(), var=var.item(), count=count.item(), ints=ints,
                whitened=distributed.whiten(DATA[part], KEEP[part]), whitened_all=distributed.whiten(DATA[part]),
                concatenated=distributed.all_gather_cat(torch.stack([DATA[4 * rank:4 * rank + 4]] * 2), 1),
                gathered=distributed.gather_objects({"rank": rank}),
                decided=distributed.broadcast_object(f"from {rank}"))


def test_statistics_over_two_ranks_equal_those_of_the_whole_batch():
    results = run_ranks(_statistics)
    kept = DATA[KEEP].tolist()
    for rank, r in enumerate(results):
        assert r["world"] == World(rank, 2, rank) and r["world"].is_main == (rank == 0)
        assert r["mean"] == pytest.approx(statistics.fmean(kept), rel=1e-12)
        assert r["var"] == pytest.approx(statistics.pvariance(kept), rel=1e-12)
        assert r["count"] == len(kept)
        assert r["ints"].dtype == torch.int64 and r["ints"].tolist() == [3, 20]
        assert r["decided"] == "from 0"
    assert results[0]["gathered"] == [{"rank": 0}, {"rank": 1}] and results[1]["gathered"] is None
    # whitened over both ranks' entries: (x - mean) / sqrt(var + 1e-8) of the kept ones, 0 elsewhere
    mean, std = statistics.fmean(kept), (statistics.pvariance(kept) + 1e-8) ** 0.5
    expected = [(x - mean) / std if k else 0.0 for x, k in zip(DATA.tolist(), KEEP.tolist())]
    whitened = torch.cat([r["whitened"] for r in results])
    assert whitened.tolist() == pytest.approx(expected, rel=1e-6)
    every = DATA.tolist()
    mean, std = statistics.fmean(every), (statistics.pvariance(every) + 1e-8) ** 0.5
    assert torch.cat([r["whitened_all"] for r in results]).tolist() == pytest.approx(
        [(x - mean) / std for x in every], rel=1e-6)
    for r in results:  # each rank's [2, 4] side by side, in rank order
        assert r["concatenated"].tolist() == [DATA.tolist()] * 2


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)


def _gradient_step(rank):
    distributed.init()
    model, (x, y) = _model(), _batch()
    mine = distributed.shard(len(x))
    torch.nn.functional.mse_loss(model(x[mine.start:mine.stop]), y[mine.start:mine.stop]).backward()
    distributed.average_gradients(model.parameters())
    return [p.grad for p in model.parameters()]


def test_averaged_gradients_equal_the_gradient_of_the_whole_batch():
    model, (x, y) = _model(), _batch()
    torch.nn.functional.mse_loss(model(x), y).backward()
    for grads in run_ranks(_gradient_step):
        for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def _one_rank_leaves(rank):
    distributed.init(timeout=datetime.timedelta(seconds=3))
    if rank == 1:
        return "left without joining the all-reduce"
    try:
        distributed.global_sum(torch.ones(1))
    except RuntimeError as e:  # gloo: the collective timed out (or the peer closed the connection)
        return f"raised: {e}"
    return "returned"


def test_a_rank_missing_from_a_collective_fails_the_others_instead_of_hanging():
    rank0, rank1 = run_ranks(_one_rank_leaves, timeout=60, leave_together=False)
    assert rank0.startswith("raised") and rank1.startswith("left")


def _broadcast_module(rank):
    distributed.init()
    torch.manual_seed(rank)  # each rank's own weights and running statistics
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    module[1].running_mean.normal_()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    distributed.broadcast_module(module)
    return before, module.state_dict()


def test_broadcast_module_gives_every_rank_rank_0s_parameters_and_buffers():
    (rank0_before, rank0_after), (rank1_before, rank1_after) = run_ranks(_broadcast_module)
    assert not torch.equal(rank0_before["0.weight"], rank1_before["0.weight"])
    for name, value in rank0_before.items():
        assert torch.equal(rank0_after[name], value) and torch.equal(rank1_after[name], value), name
