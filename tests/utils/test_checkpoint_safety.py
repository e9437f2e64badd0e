"""Loading a checkpoint never runs code from it (weights_only=True): crafted pickles are refused
with one line, every trainer's checkpoint loads under torch's own safe loader, RNG states survive
that round trip, and checkpoint files get the mode of any other file the process writes."""

import io
import os
import pickle
import random
import stat

import numpy as np
import pytest
import torch

from fastrl import cli
from fastrl.algos import ALGOS
from fastrl.utils.checkpoint import load_checkpoint, save_checkpoint
from fastrl.utils.seeding import rng_state, set_rng_state
from tests.algos._util import SMALL


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_crafted(path, marker, how):
    if how == "torch.save":  # a real checkpoint's zip layout with a code-running object inside
        torch.save({"format": 2, "algo": "ppo", "config": RunsCode(marker)}, path)
    else:  # a bare pickle (torch.load's legacy format path)
        path.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_crafted_checkpoint_runs_no_code(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    write_crafted(path, marker, how)
    with pytest.raises(ValueError, match=r"refused: it needs (posix|nt|os)\.system") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_eval_and_resume_of_a_crafted_checkpoint_run_no_code(tmp_path, capsys, how):
    marker = tmp_path / "pwned"
    write_crafted(tmp_path / "checkpoint.pt", marker, how)
    for argv in (["eval", str(tmp_path)], ["train", "ppo", "--resume", str(tmp_path), "--quiet"]):
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "refused" in err and len(err.splitlines()) == 1
        assert not marker.exists()


@pytest.mark.parametrize("algo,extra", [("ppo", dict(normalize_obs=True, normalize_reward=True)),
                                        ("dqn", {}), ("a2c", {}), ("reinforce", {})])
def test_trainer_checkpoints_load_with_torch_weights_only(tmp_path, algo, extra):
    cls = ALGOS[algo]
    trainer = cls(cls.Config(**SMALL[algo], **extra), out_dir=tmp_path)
    trainer.train()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # torch's own safe loader
    assert state["algo"] == algo and state["global_step"] == trainer.global_step
    resumed = cls.from_checkpoint(tmp_path / "checkpoint.pt", total_steps=64)
    resumed.train()
    assert resumed.global_step >= 64


def test_old_numpy_checkpoint_is_refused_in_one_line(tmp_path):
    # fastrl's earlier checkpoints stored numpy's RNG state as an ndarray
    torch.save({"algo": "ppo", "rng": {"numpy": np.random.get_state()}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="numpy") as e:
        load_checkpoint(tmp_path)
    assert "\n" not in str(e.value) and str(tmp_path / "checkpoint.pt") in str(e.value)


def test_rng_state_survives_a_weights_only_round_trip():
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state (has_gauss)
    buf = io.BytesIO()
    torch.save(rng_state(), buf)

    def draw():
        return random.random(), np.random.standard_normal(3).tolist(), np.random.rand(), torch.rand(3).tolist()

    expected = draw()
    draw()
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))
    assert draw() == expected


def test_checkpoint_file_mode_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        save_checkpoint({"w": torch.ones(2)}, tmp_path / "checkpoint.pt")
        (tmp_path / "metrics.csv").write_text("step\n")  # any other file the process writes
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "checkpoint.pt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "metrics.csv").stat().st_mode) == 0o640
