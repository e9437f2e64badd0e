"""Config fields renamed for one vocabulary with the ops and the RLHF configs (``ent_coef`` ->
``entropy_coef``, PPO's ``clip_coef`` -> ``clip_low``, ``update_epochs`` -> ``epochs``,
``norm_adv`` -> ``normalize_advantages``, ``clip_vloss`` -> ``clip_value_loss``): an old name in a
--config file, a flag or a Python override is refused naming the new one, never ignored; a
checkpoint saved under the old names (format 3) still loads and resumes."""

import json
import shutil

import pytest
import torch

from fastrl.algos import PPO, A2CConfig, PPOConfig
from fastrl.utils.config import ConfigError
from tests.algos._util import assert_one_line_error, run_cli, train_argv

OLD_TO_NEW = {"ent_coef": "entropy_coef", "clip_coef": "clip_low", "update_epochs": "epochs",
              "norm_adv": "normalize_advantages", "clip_vloss": "clip_value_loss"}
# values unlike the defaults, so a field read under the wrong name shows
OLD_VALUES = {"ent_coef": 0.03, "clip_coef": 0.15, "update_epochs": 3, "norm_adv": False, "clip_vloss": False}


@pytest.mark.parametrize("old", sorted(OLD_TO_NEW))
def test_old_name_in_a_config_file_names_the_new_one(tmp_path, capsys, old):
    for suffix, text in [(".toml", f"{old} = {json.dumps(OLD_VALUES[old])}\n"),
                         (".json", json.dumps({old: OLD_VALUES[old]}))]:
        path = tmp_path / f"old{suffix}"
        path.write_text(text)
        out = tmp_path / "run"
        rc, stdout, err = run_cli(capsys, ["train", "ppo", "--config", path, "--out", out, "--quiet"])
        assert_one_line_error(rc, err, f"--config {path}", f"{old} was renamed {OLD_TO_NEW[old]}")
        assert stdout == "" and not out.exists()


@pytest.mark.parametrize("argv,says", [
    (["--ent-coef", "0.01"], "--ent-coef was renamed --entropy-coef"),
    (["--clip-coef", "0.1"], "--clip-coef was renamed --clip-low"),
    (["--update-epochs", "2"], "--update-epochs was renamed --epochs"),
    (["--norm-adv"], "--norm-adv was renamed --normalize-advantages"),
    (["--no-norm-adv"], "--no-norm-adv was renamed --no-normalize-advantages"),
    (["--no-clip-vloss"], "--no-clip-vloss was renamed --no-clip-value-loss"),
])  # fmt: skip
def test_old_flag_names_the_new_one(tmp_path, capsys, argv, says):
    out = tmp_path / "run"
    rc, stdout, err = run_cli(capsys, train_argv("ppo", out, *argv))
    assert_one_line_error(rc, err, "fastrl train:", says)
    assert stdout == "" and not out.exists()
    # A2C has the shared field only
    rc, _, err = run_cli(capsys, train_argv("a2c", out, "--ent-coef", "0.01"))
    assert_one_line_error(rc, err, "--ent-coef was renamed --entropy-coef")


def test_new_flags_set_the_new_fields(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, train_argv("ppo", out, "--entropy-coef", "0.02", "--clip-low", "0.1", "--epochs",
                                            "2", "--no-normalize-advantages", "--no-clip-value-loss"))
    assert rc == 0, err
    cfg = PPO.from_checkpoint(out).config
    assert (cfg.entropy_coef, cfg.clip_low, cfg.epochs, cfg.normalize_advantages, cfg.clip_value_loss) == (
        0.02, 0.1, 2, False, False)


def old_checkpoint(ppo_run, tmp_path):
    """A copy of a PPO run whose checkpoint's config uses the old field names (as fastrl wrote
    format 3 before the rename), with values unlike the defaults."""
    run = shutil.copytree(ppo_run, tmp_path / "old-run")
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["format"] == 3
    config = {k: v for k, v in state["config"].items() if k not in OLD_TO_NEW.values()}
    state["config"] = {**config, **OLD_VALUES}
    torch.save(state, run / "checkpoint.pt")
    return run


def test_checkpoint_with_old_field_names_loads_under_the_new_ones(ppo_run, tmp_path):
    run = old_checkpoint(ppo_run, tmp_path)
    trainer = PPO.from_checkpoint(run, total_steps=48)
    cfg = trainer.config
    assert (cfg.entropy_coef, cfg.clip_low, cfg.epochs, cfg.normalize_advantages, cfg.clip_value_loss) == (
        0.03, 0.15, 3, False, False)
    assert trainer.global_step == 32
    trainer.train()
    assert trainer.global_step == 48
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["config"]  # the old file is untouched
    assert "ent_coef" in saved and "entropy_coef" not in saved


def test_cli_resumes_a_checkpoint_with_old_field_names(ppo_run, tmp_path, capsys):
    run = old_checkpoint(ppo_run, tmp_path)
    rc, stdout, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--total-steps", "48", "--quiet",
                                       "--final-eval", "1", "--entropy-coef", "0.03"])  # the saved value: accepted
    assert rc == 0, err
    assert "resuming with total_steps = 48" in stdout and "entropy_coef" not in stdout
    resumed = torch.load(run / "checkpoint.pt", weights_only=True)
    assert resumed["global_step"] == 48 and resumed["config"]["entropy_coef"] == 0.03
    rc, _, err = run_cli(capsys, ["train", "ppo", "--resume", run, "--quiet", "--clip-low", "0.3"])
    assert_one_line_error(rc, err, "--clip-low 0.3 differs from the resumed run's clip_low = 0.15")


def test_python_override_with_an_old_name_names_the_new_one(ppo_run):
    with pytest.raises(ConfigError, match="ent_coef was renamed entropy_coef") as e:
        PPO.from_checkpoint(ppo_run, ent_coef=0.1)
    assert e.value.field == "entropy_coef"
    with pytest.raises(ConfigError, match=r"unknown config fields for ppo: \['warp_factor'\]"):
        PPO.from_checkpoint(ppo_run, warp_factor=9)


def test_configs_share_the_vocabulary_of_the_ops():
    """The names the PPO op takes (clip_low, entropy_coef) are the config fields' names."""
    assert {"clip_low", "entropy_coef", "epochs", "normalize_advantages"} <= set(PPOConfig.__dataclass_fields__)
    assert "entropy_coef" in A2CConfig.__dataclass_fields__
    assert not set(OLD_TO_NEW) & set(PPOConfig.__dataclass_fields__)
