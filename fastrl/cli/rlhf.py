"""``fastrl rlhf``: the offline demo, and training runs on the user's own model.

``fastrl rlhf demo``: every field of :class:`fastrl.rlhf.demo.DemoConfig` is a flag, its nested
configs' fields too (``--ppo-batch-size``, ``--reward-epochs``, ``--model-n-layer``).

``fastrl rlhf train ALGO --config run.toml``: a logged, checkpointed run (``fastrl.rlhf.run``) of
ALGO (ppo, grpo, rloo, reinforce_pp, dpo) on the model, data and rewards the run file names
(docs/RLHF.md, "fastrl rlhf train"); every field of the trainer's config is a flag too, and a flag
overrides the file's ``[config]`` table. The run file is copied into the run directory, so that
``--resume DIR`` rebuilds the same models and rewards.

Bad input (a config value, the run file, a prompts file, a reward function, an output path) is one
line on stderr and exit code 2, before any training."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys
from pathlib import Path

from fastrl.cli.flags import (
    UsageError,
    add_config_flags,
    build_config,
    flag,
    flag_values,
    read_config_file,
)

# fastrl rlhf train: algorithm -> (trainer class name, config class name); rloo and reinforce_pp are
# the GRPO trainer with that advantage_estimator
TRAIN_ALGOS = {
    "ppo": ("PPOTrainer", "RLHFPPOConfig"),
    "grpo": ("GRPOTrainer", "GRPOConfig"),
    "rloo": ("GRPOTrainer", "GRPOConfig"),
    "reinforce_pp": ("GRPOTrainer", "GRPOConfig"),
    "dpo": ("DPOTrainer", "DPOConfig"),
}
RUN_FILE = "run.toml"  # the run file's copy in the run directory
# the run file's tables and their keys (the [config] table holds trainer config fields)
RUN_KEYS = {
    "": {"steps", "checkpoint_every", "out", "device", "config_dir"},
    "model": {"transformers", "gpt", "alphabet", "tokenizer", "weights", "critic"},
    "data": {"prompts", "pairs", "split"},
    "reward": {"functions", "weights", "model"},
}
RUN_TABLES = {"model", "data", "reward", "config"}


class _OneLineParser(argparse.ArgumentParser):
    """A bad command line (an unknown algorithm, a flag's bad value) is one line, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def add_parser(sub) -> None:
    from fastrl.rlhf import demo

    rlhf = sub.add_parser("rlhf", help="RLHF: the offline demo, and training runs on your own model")
    commands = rlhf.add_subparsers(dest="rlhf_command", required=True, parser_class=_OneLineParser)
    p = commands.add_parser("demo", help="offline demo: SFT, then reward model + PPO/GRPO/RLOO/REINFORCE++, or DPO",
                            description="SFT of a small GPT on a synthetic task, a reward model from preferences "
                                        "labeled by a hidden rule, then PPO, GRPO, RLOO or REINFORCE++; or DPO on "
                                        "the labeled pairs (docs/RLHF.md). Every DemoConfig field is a flag, its "
                                        "nested configs' fields too.")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    add_config_flags(p, demo.DemoConfig)
    p.set_defaults(func=run, label="rlhf demo")

    train = commands.add_parser("train", help="train your own model (fastrl rlhf train ALGO --help lists its options)")
    algos = train.add_subparsers(dest="algo", required=True, metavar="{" + ",".join(TRAIN_ALGOS) + "}")
    for name in TRAIN_ALGOS:
        a = algos.add_parser(name, help=f"a {name} run from a run file",
                             description=f"A {name} run of the model, data and rewards that --config names "
                                         "(docs/RLHF.md, 'fastrl rlhf train'). Every trainer config field is a "
                                         "flag; a flag overrides the run file's [config] table.")
        a.add_argument("--config", metavar="RUN.toml", help="the run file (TOML): model, data, rewards, config")
        a.add_argument("--resume", metavar="DIR", help="continue the run in DIR (its run.toml and checkpoint)")
        a.add_argument("--out", help="run directory (default: the run file's out, else runs/rlhf-ALGO)")
        a.add_argument("--steps", type=int, help="train until this many steps (default: the run file's steps)")
        a.add_argument("--checkpoint-every", type=int, metavar="K",
                       help="checkpoint every K steps, and at the end (0: only at the end)")
        a.add_argument("--overwrite", action="store_true", help="replace the run that --out already holds")
        a.add_argument("--quiet", action="store_true", help="no progress bar")
        add_config_flags(a, _config_class(name))
        a.set_defaults(func=run_train, label=f"rlhf train {name}")


def run(args: argparse.Namespace) -> int:
    from fastrl import distributed
    from fastrl.rlhf import demo
    from fastrl.utils.rundir import RunLock, check_new_run, clear_run

    try:
        cfg = build_config(demo.DemoConfig, flag_values(args, demo.DemoConfig))
        main = distributed.init(cfg.device).is_main  # under torchrun rank 0 alone writes the run
        # an earlier run's files are never replaced silently
        _on_rank_0(lambda: check_new_run(cfg.out, overwrite=args.overwrite))
        with RunLock(cfg.out) if main else contextlib.nullcontext():
            if args.overwrite and main:
                clear_run(Path(cfg.out))
            summary = demo.run_demo(cfg)
    except (ValueError, TypeError, OSError) as exc:  # a ConfigError, an --out that cannot be a directory
        raise UsageError(str(exc)) from None
    print(json.dumps(summary, indent=2))
    print(f"metrics: {cfg.out}/metrics.csv, plot: {cfg.out}/training.png")
    return 0


def _on_rank_0(fn) -> None:
    """``fn()`` on rank 0 alone (a check or a write of the run directory); under torchrun an error
    it raises is raised on every rank, so that none goes on to wait for rank 0 in training."""
    from fastrl import distributed

    failed = None
    if distributed.current().is_main:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (sent to every rank, raised there)
            failed = e
    failed = distributed.broadcast_object(failed)
    if failed is not None:
        raise failed


# --------------------------------------------------------------------------- fastrl rlhf train


def _config_class(algo: str) -> type:
    import fastrl.rlhf as rlhf

    return getattr(rlhf, TRAIN_ALGOS[algo][1])


def run_train(args: argparse.Namespace) -> int:
    from fastrl import distributed
    from fastrl.rlhf.run import run_config, train_run
    from fastrl.utils.stopping import EXIT_SIGTERM, StopRequest

    flags = flag_values(args, _config_class(args.algo))
    if args.resume:
        if args.config:
            raise UsageError("--config cannot be combined with --resume: the run keeps the run.toml it started "
                             "with")
        resume_dir = Path(args.resume)
        run_file = resume_dir / RUN_FILE
        if not run_file.is_file():
            raise UsageError(f"--resume {resume_dir}: no {RUN_FILE} there (not a fastrl rlhf train run)")
        spec = read_run_file(str(run_file))
        trainer_name, saved = _run_config(run_config, resume_dir)
        algo = _resumed_algo(trainer_name, saved)
        if algo != args.algo:
            raise UsageError(f"--resume {resume_dir} holds a {algo} run ({trainer_name}), not {args.algo}: "
                             f"resume it with `fastrl rlhf train {algo} --resume {resume_dir}`")
        differ = [f"{flag(k)} {v!r} (the run has {saved.get(k)!r})" for k, v in flags.items() if saved.get(k) != v]
        if differ:
            raise UsageError(f"--resume {resume_dir}: {', '.join(differ)} would change the run mid-way; "
                             f"a resumed run keeps its config")
        cfg = _build_trainer_config(args.algo, saved, {}, f"{run_file}")
        out = resume_dir
    else:
        if not args.config:
            raise UsageError("--config RUN.toml is required (the model, data and rewards), or --resume DIR")
        spec = read_run_file(args.config)
        cfg = _build_trainer_config(args.algo, spec.get("config", {}), flags, f"--config {args.config}")
        out = Path(args.out) if args.out else _path(spec, None, "out") if "out" in spec else None
        out = out or Path(f"runs/rlhf-{args.algo}")
    steps = _count(args.steps if args.steps is not None else spec.get("steps"), "steps", minimum=1)
    every = args.checkpoint_every if args.checkpoint_every is not None else spec.get("checkpoint_every", 0)
    every = _count(every, "checkpoint_every", minimum=0)

    trainer, prompts = build_trainer(args.algo, spec, cfg)
    if not args.resume:  # under torchrun rank 0 alone writes the run directory
        _on_rank_0(lambda: _copy_run_file(args.config, spec, out, args.overwrite))
    print(f"fastrl: rlhf {args.algo}, {steps} steps, run directory {out}")
    resume = f"continue with: fastrl rlhf train {args.algo} --resume {out}"
    try:
        with StopRequest() as stop:  # SIGTERM (a scheduler's notice): stop after the step, saving
            rows = train_run(trainer, prompts, steps, out, checkpoint_every=every, resume=bool(args.resume),
                             overwrite=args.overwrite, progress=not args.quiet, stop=stop)  # fmt: skip
    except KeyboardInterrupt:
        print(f"\nfastrl: interrupted; wrote {out}/checkpoint.pt ({resume})", file=sys.stderr)
        return 130
    except ValueError as exc:  # what the trainer finds in the data or a reward function's values
        raise UsageError(str(exc)) from None
    if stop.stopped:  # every rank stopped after the same step; rank 0 says so
        if distributed.current().is_main:
            print(f"fastrl: stopped by SIGTERM; wrote {out}/checkpoint.pt ({resume})", file=sys.stderr)
        return EXIT_SIGTERM
    last = ", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()) if rows else "nothing left to train"
    print(f"fastrl: step {steps}: {last}")
    print(f"fastrl: wrote {out}/metrics.csv, learning_curve.png, checkpoint.pt")
    return 0


def _run_config(run_config, resume_dir: Path) -> tuple[str, dict]:
    try:
        return run_config(resume_dir)
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(f"--resume {resume_dir}: no checkpoint.pt there") from None


def _resumed_algo(trainer_name: str, saved: dict) -> str:
    """The train command's algorithm of a run's trainer and config."""
    if trainer_name == "GRPOTrainer":
        estimator = saved.get("advantage_estimator")
        return estimator if estimator in ("rloo", "reinforce_pp") else "grpo"
    return {"PPOTrainer": "ppo", "DPOTrainer": "dpo"}.get(trainer_name, trainer_name)


def _count(value, name: str, *, minimum: int) -> int:
    if value is None:
        raise UsageError(f"{flag(name)}: give the number of {name.replace('_', ' ')} "
                         f"(or `{name} = N` in the run file)")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{flag(name)} must be an int >= {minimum}, got {value!r}")
    return value


def _build_trainer_config(algo: str, values: dict, flags: dict, where: str):
    """The trainer config: the run file's [config] values, then the flags; rloo and reinforce_pp set
    the advantage_estimator (a different one given is refused)."""
    from fastrl.utils.config import ConfigError, check_names

    cls = _config_class(algo)
    if not isinstance(values, dict):
        raise UsageError(f"{where}: [config] must be a table of {cls.__name__} fields")
    try:
        check_names(cls, values, f"{where} [config]", label=algo)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    values = {**values, **flags}
    if algo in ("rloo", "reinforce_pp"):
        given = values.get("advantage_estimator", algo)
        if given != algo:
            raise UsageError(f"--advantage-estimator {given} contradicts the algorithm {algo}: "
                             f"use `fastrl rlhf train grpo --advantage-estimator {given}`")
        values["advantage_estimator"] = algo
    try:
        return cls.checked("config", cls(**values))
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}") from None


def read_run_file(path: str) -> dict:
    """The run file's tables, checked for unknown tables and keys (one line naming them)."""
    spec = read_config_file(path)
    where = f"--config {path}" if Path(path).name != RUN_FILE else str(path)
    for key, value in spec.items():
        if key in RUN_TABLES:
            if not isinstance(value, dict):
                raise UsageError(f"{where}: {key} must be a table ([{key}])")
            unknown = sorted(set(value) - RUN_KEYS[key]) if key in RUN_KEYS else []
            if unknown:
                raise UsageError(f"{where}: unknown key {', '.join(unknown)} in [{key}]; "
                                 f"known: {', '.join(sorted(RUN_KEYS[key]))}")
        elif key not in RUN_KEYS[""]:
            raise UsageError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(RUN_KEYS[''] | RUN_TABLES))}")
    # relative paths are relative to the run file's directory (its copy in a run directory keeps
    # the original one in config_dir)
    spec["config_dir"] = spec.get("config_dir") or str(Path(path).resolve().parent)
    return spec


def _path(spec: dict, table: str | None, key: str) -> Path:
    """The path of ``[table] key`` (``table`` None: a top-level key), relative to config_dir."""
    value = spec[key] if table is None else spec[table][key]
    if not isinstance(value, str) or not value:
        name = key if table is None else f"[{table}] {key}"
        raise UsageError(f"{name} must be a path (a string), got {value!r}")
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else Path(spec["config_dir"]) / path


def _copy_run_file(config: str, spec: dict, out: Path, overwrite: bool) -> None:
    """The run file into the run directory, with ``config_dir`` (its own directory) first so that
    its relative paths still resolve from there."""
    from fastrl.utils.rundir import check_new_run

    check_new_run(out, overwrite)  # an existing run's run file is not replaced unless --overwrite
    text = Path(config).read_bytes().decode("utf-8-sig")
    if "config_dir" not in read_config_file(config):
        text = f"config_dir = {json.dumps(spec['config_dir'])}  # the original run file's directory\n" + text
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(text)


def build_trainer(algo: str, spec: dict, cfg):
    """``(trainer, prompts)``: the policy (and tokenizer), the data and the rewards the run file
    names, as the trainer for ``algo`` with config ``cfg`` (prompts None for DPO)."""
    from fastrl.rlhf import DPOTrainer, GRPOTrainer, PPOTrainer

    policy, tokenizer = load_policy(spec, cfg.seed)
    data = spec.get("data", {})
    split = data.get("split")
    if split is not None and not (isinstance(split, str) and split):
        raise UsageError(f"[data] split must be a split's name (a string), got {split!r}")
    if algo == "dpo":
        if "pairs" not in data:
            raise UsageError("[data] pairs: dpo needs a preference JSONL file (prompt, chosen, rejected) or a "
                             "dataset saved with save_to_disk")
        if spec.get("reward"):
            raise UsageError("[reward]: dpo trains on the preference pairs; it takes no reward")
        pairs = _read(lambda path: read_pairs(path, tokenizer, split), _path(spec, "data", "pairs"), "[data] pairs")
        try:
            return DPOTrainer(policy, pairs, tokenizer, cfg), None
        except ValueError as exc:
            raise UsageError(f"[data] pairs: {exc}") from None
    if "prompts" not in data:
        raise UsageError(f"[data] prompts: {algo} needs a prompts file (one per line, or JSONL with \"prompt\") "
                         "or a dataset saved with save_to_disk")
    prompts = _read(lambda path: read_prompts(path, split, tokenizer), _path(spec, "data", "prompts"),
                    "[data] prompts")
    reward, weights = load_reward(spec)
    try:
        if algo == "ppo":
            critic = None
            if "critic" in spec["model"]:
                from fastrl.nn.hf import HFScalar

                critic = HFScalar.from_pretrained(str(_path(spec, "model", "critic")))
            elif "transformers" in spec["model"]:  # a transformers policy lends no trunk: its directory's classifier
                from fastrl.nn.hf import HFScalar

                critic = HFScalar.from_pretrained(str(_path(spec, "model", "transformers")), num_labels=1)
            if critic is not None:
                critic = critic.to(policy.lm_head.weight.device)
            trainer = PPOTrainer(policy, reward, tokenizer, cfg, critic=critic, reward_weights=weights)
        else:
            trainer = GRPOTrainer(policy, reward, tokenizer, cfg, reward_weights=weights)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"[reward]: {exc}") from None
    return trainer, prompts


def _read(reader, path: Path, what: str):
    try:
        return reader(path)
    except FileNotFoundError:
        raise UsageError(f"{what}: no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def read_dataset(path: Path, split: str | None):
    """The ``datasets.Dataset`` that ``save_to_disk`` wrote to the directory ``path`` (of a
    DatasetDict: its ``split``). ValueError: not such a directory, a split missing or not named,
    a split named for a single dataset, no ``datasets`` package."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{path} is a directory: reading a dataset saved with save_to_disk needs the datasets "
                         "package (the rlhf extra: pip install 'torch-fastrl[rlhf]')") from None
    try:
        data = datasets.load_from_disk(str(path))
    except FileNotFoundError:  # what datasets raises for a directory it did not write
        raise ValueError(f"{path} is a directory but no dataset saved with save_to_disk") from None
    if isinstance(data, datasets.DatasetDict):
        if split is None:
            raise ValueError(f"{path} holds the splits {', '.join(data)}: name one with [data] split, "
                             f"e.g. split = {next(iter(data), 'train')!r}")
        if split not in data:
            raise ValueError(f"{path} has no split {split!r} (its splits: {', '.join(data)})")
        return data[split]
    if split is not None:
        raise ValueError(f"{path} holds one dataset, not splits: remove [data] split = {split!r}")
    return data


def read_pairs(path: Path, tokenizer, split: str | None = None) -> list:
    """Preference pairs: a JSONL file (:func:`fastrl.rlhf.load_preferences`), or a dataset saved
    with ``save_to_disk`` (prompt, chosen and rejected columns, or prompt and ranking)."""
    from fastrl.rlhf.data import load_preferences, preference_pairs

    if path.is_dir():
        return preference_pairs(read_dataset(path, split), tokenizer, name=str(path))
    _no_split(path, split)
    return load_preferences(path, tokenizer)


def _no_split(path: Path, split: str | None) -> None:
    if split is not None:
        raise ValueError(f"{path} is a file: [data] split = {split!r} names a split of a dataset directory")


def read_prompts(path: Path, split: str | None = None, tokenizer=None):
    """The prompts of a file: one per line (blank lines skipped), or, for a ``.jsonl`` file, one
    JSON object per line with a ``"prompt"`` (a non-empty string, or a conversation: a list of
    role/content messages, rendered by the tokenizer's chat template), as records whose other keys
    are columns for the reward functions (a key missing from a line is None there, as in
    ``datasets``). A directory: the ``datasets.Dataset`` saved there with ``save_to_disk`` (its
    ``split`` of a DatasetDict), checked as the trainer will read it (a "prompt" column)."""
    from fastrl.rlhf.data import is_conversation, prompt_source

    if path.is_dir():
        dataset = read_dataset(path, split)
        try:
            prompt_source(dataset, tokenizer, name=str(path))
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        return dataset
    _no_split(path, split)
    prompts = []
    text = path.read_bytes().decode("utf-8-sig")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: invalid JSON: {exc}") from None
            prompt = record.get("prompt") if isinstance(record, dict) else None
            if not (isinstance(prompt, str) and prompt) and not is_conversation(prompt):
                raise ValueError(f"{path}:{number}: each line must be an object with a non-empty string \"prompt\" "
                                 "or a conversation (a list of role/content messages)")
            line = record
        prompts.append(line)
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    if path.suffix == ".jsonl":  # every record with every column
        keys = list(dict.fromkeys(k for record in prompts for k in record))
        prompts = [{k: record.get(k) for k in keys} for record in prompts]
    return prompts


def load_policy(spec: dict, seed: int):
    """``(policy, tokenizer)``: a local ``transformers`` directory (its tokenizer too, unless
    ``tokenizer`` names another), or the built-in GPT of ``[model] gpt`` (GPTConfig fields; the
    vocabulary from the tokenizer) with ``alphabet`` (a CharTokenizer) or ``tokenizer``, from
    ``weights`` (a state_dict file) or a random start drawn from ``seed``."""
    import torch

    from fastrl.nn.gpt import GPT, GPTConfig
    from fastrl.rlhf.tokenizer import CharTokenizer, HFTokenizer
    from fastrl.utils.config import ConfigError, check_device

    model = spec.get("model")
    check_device(spec.get("device", "cpu"), "device")
    if not model or ("transformers" in model) == ("gpt" in model):
        raise UsageError("[model]: give exactly one of transformers = \"DIR\" (a local transformers model) "
                         "and gpt = { n_layer = ..., ... } (the built-in GPT)")
    device = spec.get("device", "cpu")
    if "tokenizer" in model and "alphabet" in model:
        raise UsageError("[model]: give tokenizer or alphabet, not both")
    if "alphabet" in model:
        try:
            tokenizer = CharTokenizer(model["alphabet"])
        except ValueError as exc:
            raise UsageError(f"[model] alphabet: {exc}") from None
    elif "tokenizer" in model:
        tokenizer = _load("[model] tokenizer", lambda: HFTokenizer(str(_path(spec, "model", "tokenizer"))))
    elif "transformers" in model:
        tokenizer = _load("[model] tokenizer", lambda: HFTokenizer(str(_path(spec, "model", "transformers"))))
    else:
        raise UsageError("[model]: the built-in GPT needs alphabet = \"...\" (its characters) or tokenizer = \"DIR\"")
    if "transformers" in model:
        from fastrl.nn.hf import HFCausalLM

        if "weights" in model:
            raise UsageError("[model] weights: only for the built-in GPT (a transformers directory has its own)")
        policy = _load("[model] transformers", lambda: HFCausalLM.from_pretrained(str(_path(spec, "model",
                                                                                              "transformers"))))
        return policy.to(device), tokenizer
    gpt = model["gpt"]
    if not isinstance(gpt, dict):
        raise UsageError(f"[model] gpt must be a table of GPTConfig fields, got {gpt!r}")
    try:
        gpt_cfg = GPTConfig.checked("[model] gpt", GPTConfig(**{"vocab_size": tokenizer.vocab_size, **gpt}))
    except (TypeError, ConfigError) as exc:
        raise UsageError(f"[model] gpt: {exc}") from None
    torch.manual_seed(seed)  # the random start, when no weights are given
    policy = GPT(gpt_cfg)
    if "weights" in model:
        path = _path(spec, "model", "weights")
        state = _load("[model] weights", lambda: torch.load(path, map_location="cpu", weights_only=True))
        _load("[model] weights", lambda: policy.load_state_dict(state))
    return policy.to(device), tokenizer


def _load(what: str, load):
    try:
        return load()
    except FileNotFoundError as exc:
        raise UsageError(f"{what}: no such file or directory: {exc.filename or exc}") from None
    except Exception as exc:  # transformers' and torch's own errors, in one line naming the key
        raise UsageError(f"{what}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") \
            from None


def load_reward(spec: dict):
    """``(reward, weights)``: the ``[reward]`` table's functions (``module:function`` strings, with
    optional weights) or its reward ``model`` (a ``transformers`` classifier directory, or a
    :meth:`RewardModel.save` file)."""
    from fastrl.rlhf.reward_model import HFRewardModel, RewardModel

    reward = spec.get("reward")
    if not reward or ("functions" in reward) == ("model" in reward):
        raise UsageError("[reward]: give exactly one of functions = [\"module:function\", ...] and "
                         "model = \"PATH\" (a reward model)")
    if "model" in reward:
        if "weights" in reward:
            raise UsageError("[reward] weights apply to reward functions, not to a reward model")
        path = _path(spec, "reward", "model")
        device = spec.get("device", "cpu")
        loader = HFRewardModel.from_pretrained if path.is_dir() else RewardModel.load
        return _load("[reward] model", lambda: loader(path)).to(device).requires_grad_(False), None
    names = reward["functions"]
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names:
        raise UsageError(f"[reward] functions must be a list of \"module:function\" strings, got {names!r}")
    weights = reward.get("weights")
    if weights is not None and (not isinstance(weights, list) or len(weights) != len(names) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in weights)):
        raise UsageError(f"[reward] weights must be a list of {len(names)} finite numbers (one per function), "
                         f"got {weights!r}")
    return [reward_function(name) for name in names], weights


def reward_function(name: str):
    """The callable a ``module:function`` string names (the module imported as Python would, with
    the current directory on the path)."""
    where = f"[reward] functions: {name!r}"
    if not isinstance(name, str) or name.count(":") != 1 or not all(name.split(":")):
        raise UsageError(f"{where} must be \"module:function\" (e.g. \"my_rewards:length_bonus\")")
    module_name, attr = name.split(":")
    if "" not in sys.path and os.getcwd() not in sys.path:  # the user's own module, next to the run
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{where}: cannot import module {module_name!r}: {exc}") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise UsageError(f"{where}: module {module_name!r} has no {attr!r}")
    if not callable(fn):
        raise UsageError(f"{where}: {attr!r} is a {type(fn).__name__}, not a function (prompts, completions) "
                         f"-> list[float]")
    return fn

