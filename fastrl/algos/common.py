"""What every trainer shares: the common config fields, the environment, the training loop with
logging and checkpoints, and evaluation. An algorithm file adds its networks (``setup``), one
iteration of training (``train_iteration``), its policy (``act``) and what it checkpoints.

What the loop guarantees: the config is validated before any work (``fastrl.utils.config``); a
run directory holding another run is refused unless ``overwrite=True``, and is locked while a run
writes (``fastrl.utils.rundir``); Ctrl-C saves a final checkpoint and plot before it propagates;
NaN or Inf in a logged metric or in the weights stops the run and leaves the last good checkpoint
in place; checkpoints load with ``weights_only=True`` and are checked before anything is loaded.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import inspect
import math
import textwrap
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import torch

from fastrl import distributed, envs, ops
from fastrl.utils import stopping
from fastrl.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastrl.utils.config import (
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    ConfigError,
    Rule,
    check_device,
    check_field,
    check_names,
    validate_config,
    with_new_names,
)
from fastrl.utils.logging import RunLogger
from fastrl.utils.memory import keep_freed_memory
from fastrl.utils.rundir import (
    RunLock,
    check_new_run,
    check_not_locked,
    clear_run,
    copy_run_log,
    remove_orphan_temp_files,
)
from fastrl.utils.seeding import rng_state, seed_everything, set_rng_state
from fastrl.utils.stopping import StopRequest

# 2: RNG states as tensors and plain values, loadable with weights_only=True; 3: adds the finished
# episodes not yet logged (a format-2 checkpoint lost them: it loads with none)
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (2, 3)


@dataclass
class TrainConfig:
    """Fields every trainer has."""

    env_id: str = "CartPole-v1"
    """gymnasium id; CartPole-v1, Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0 and
    Pendulum-v1 run natively, any other id on gymnasium's own vector env; MinAtar ids
    (MinAtar/Breakout-v1, ...) run fastrl's MinAtar games, with convolutional networks."""
    env_kwargs: dict[str, float | int | bool | str | None] = dataclasses.field(default_factory=dict)
    """keyword arguments of the environment: max_episode_steps (None: no time limit) and the env's
    own (fastrl.envs.make; e.g. {"max_episode_steps": 200}); on the CLI a JSON object"""
    num_envs: int = 8
    """environments stepped in parallel"""
    total_steps: int = 100_000
    """environment steps to train for (summed over all envs)"""
    seed: int = 0
    """seeds the networks, the sampling and the environments"""
    device: str = "cpu"
    """where everything runs: cpu or cuda"""
    log_every: int = 1
    """iterations between rows of metrics.csv (each row reads scalars back from the device)"""
    checkpoint_every: int = 0
    """iterations between checkpoints (0: only at the end of training)"""
    target_return: float | None = None
    """stop early once the mean return of the last 100 training episodes (or, with eval_every,
    of the latest greedy evaluation) reaches this"""
    eval_every: int = 0
    """environment steps between greedy evaluations during training (0: none); logged as
    eval_return"""
    eval_episodes: int = 25
    """episodes per evaluation during training"""
    cpu_threads: int | None = 1
    """torch intra-op threads while training or evaluating on the CPU (restored afterwards; None
    keeps torch's setting). Small networks run fastest on one: extra threads only add
    synchronization, and collapse when another process holds a core."""

    # The range of each numeric field (fastrl.utils.config checks every field's type).
    field_rules: ClassVar[dict[str, Rule]] = {
        "num_envs": POSITIVE, "total_steps": POSITIVE, "seed": SEED, "log_every": POSITIVE,
        "checkpoint_every": NON_NEGATIVE, "eval_every": NON_NEGATIVE, "eval_episodes": POSITIVE,
        "cpu_threads": POSITIVE,
    }
    # Fields renamed since a checkpoint or config file may have been written: old name -> new name.
    renamed: ClassVar[dict[str, str]] = {}

    def check(self) -> None:
        """Rules across fields, and values only the environment can judge (after the per-field
        checks). A subclass extends it; raise ConfigError naming the field."""
        check_device(self.device)
        if self.env_id not in gymnasium.registry and self.env_id not in envs.MINATAR_SPECS:
            raise ConfigError(f"env_id {self.env_id!r} is not a registered gymnasium environment or a MinAtar game "
                              f"(MinAtar/Breakout-v1, ...: fastrl.envs.MINATAR_ENVS)", "env_id")


def bootstrapped_returns(rewards: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
                         done: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted returns ``[T, N]`` (time-major), cut where an episode ends. ``next_values[t]``
    is the value of the observation after step t (the final observation where an episode ended):
    a terminated step adds nothing after its reward, a truncated step bootstraps from its next
    value, folded into its reward (r_t + gamma V(final obs_t)), and the last step from its own, so
    one backward recurrence covers every case."""
    truncated = done & ~terminated
    folded = rewards + gamma * torch.where(truncated, next_values, 0.0)
    return ops.discounted_returns(folded, done, gamma, bootstrap=next_values[-1])


class TrainingDiverged(RuntimeError):
    """NaN or Inf in a training metric or in the weights: the run stopped."""


class Trainer:
    """The loop shared by every algorithm; subclasses define the hooks below."""

    algo: ClassVar[str]
    Config: ClassVar[type[TrainConfig]]
    autoreset_mode: ClassVar[str] = "same_step"  # final_obs in info: bootstrap truncations
    may_be_nan: ClassVar[frozenset[str]] = frozenset()  # diagnostics that are NaN when undefined
    # checkpointed() entries that hold this rank's own envs' data (under torchrun each rank's goes
    # into the checkpoint), besides the envs' state and observations
    per_rank_modules: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: TrainConfig, out_dir: str | Path | None = None, progress: bool = False, *,
                 overwrite: bool = False, network: torch.nn.Module | None = None, env=None):
        """``out_dir``: where train() writes metrics.csv, the checkpoint and the plot; a directory
        that already holds a run is refused unless ``overwrite`` (which deletes that run's files
        when training starts). ``network``: your own network in place of the default MLP, with
        the interface of the one it replaces (an ActorCritic's ``dist``, ``value`` and ``act`` for
        the on-policy trainers, a QNetwork's ``forward`` for DQN; docs/trainers.md); moved to the
        config's device and trained in place. ``env``: a ready-made fastrl VectorEnv
        (``fastrl.envs.make(...)``, made with ``autoreset_mode="same_step"``) in place of
        ``config.env_id``: its id and keyword arguments replace the config's (so evaluation envs
        and checkpoints are made alike); its num_envs and device must be the config's.

        Under torchrun (docs/distributed.md) the trainer joins the process group itself; the
        config counts the whole job, and this process steps its shard of the envs."""
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        if network is not None and not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        self.network = network
        if env is not None:
            config = _config_of_env(config, env)
        self.config = config = validate_config(config)  # a checked copy: plain types only
        self.world = distributed.init(config.device)
        try:  # this process's envs: [r*n/W, (r+1)*n/W) of the config's num_envs
            self.env_shard = distributed.shard(config.num_envs, self.world)
        except ValueError as e:
            raise ConfigError(str(e), "num_envs") from None
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.overwrite = overwrite
        if self.out_dir is not None and self.world.is_main:
            check_new_run(self.out_dir, overwrite)  # fail early; train() checks again under the lock
        self.progress = progress and self.world.is_main  # rank 0 alone writes
        self.device = distributed.rank_device(config.device)
        self._resume_dir: Path | None = None  # the directory of the checkpoint this trainer resumed
        self._writing_run = False  # whether train() has claimed out_dir
        self._saved_step: int | None = None  # step of the checkpoint in out_dir, if any
        self.stop_request = StopRequest()  # request(): end train() early, saving (fastrl.utils.stopping)
        with self._threads():
            # The same seed on every rank: networks start equal and the shared draws (action noise
            # for the whole batch, minibatch permutations) stay in step across ranks.
            seed_everything(config.seed)
            self.env = self._make_env(env)
            self.discrete = isinstance(self.env.single_action_space, gymnasium.spaces.Discrete)
            self.obs_shape = tuple(self.env.single_observation_space.shape)
            self.obs_dim = int(math.prod(self.obs_shape))
            # [H, W, C] grids (MinAtar): convolutional networks, observations kept as the env gives them
            self.image_obs = len(self.obs_shape) == 3
            self.action_dim = (int(self.env.single_action_space.n) if self.discrete
                               else int(math.prod(self.env.single_action_space.shape)))
            self.validate()
            if self.image_obs:
                self._check_image_config()
            self.global_step = 0
            self.iteration = 0
            self.recent_returns: deque[float] = deque(maxlen=100)
            self.history: list[dict[str, float]] = []
            # Finished episodes not yet logged: per step on the device (return, length, ended), and
            # those already read back to the host (at a checkpoint) as returns and lengths.
            self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
            self._unlogged: tuple[list[float], list[float]] = ([], [])
            self._next_eval = config.eval_every
            self._resumed = False
            self.setup()
            self.obs, _ = self._reset_env(config.seed)

    def _reset_env(self, seed: int):
        """Reset with ``seed``, each env seeded by its global index (so by rank on torchrun)."""
        first = self.env_shard.start
        if first and not hasattr(self.env, "first_env"):  # gymnasium's envs: env i gets seed + i
            return self.env.reset(seed=[(seed + first + i) % 2**63 for i in range(self.env.num_envs)])
        return self.env.reset(seed=seed)

    def _make_env(self, env=None):
        if env is not None:
            self._check_env_instance(env)
        else:
            env = self._make_env_from_config()
        if hasattr(env, "first_env"):
            env.first_env = self.env_shard.start  # env i is env first_env + i of the whole job
        return env

    def _check_env_instance(self, env) -> None:
        cfg = self.config
        n = len(self.env_shard)
        if env.num_envs != n:
            share = f" ({cfg.num_envs} over {self.world.size} processes)" if self.world.distributed else ""
            raise ConfigError(f"num_envs: the env given has {env.num_envs} envs, the config {n}{share}", "num_envs")
        if not _same_device(torch.device(env.device), self.device):
            raise ConfigError(f"device: the env given is on {env.device}, the config's device is {self.device}",
                              "device")
        if env.metadata.get("autoreset_mode") != gymnasium.vector.AutoresetMode.SAME_STEP:
            raise ValueError(f"env: {self.algo} needs an env made with autoreset_mode='same_step' (the final "
                             f"observations of truncated episodes), got {env.metadata.get('autoreset_mode')}")

    def _make_env_from_config(self):
        cfg = self.config
        try:
            env = envs.make(cfg.env_id, len(self.env_shard), device=self.device, seed=cfg.seed,
                            autoreset_mode=self.autoreset_mode, **cfg.env_kwargs)
        except (ValueError, TypeError, ImportError, gymnasium.error.Error) as e:
            known = cfg.env_id in gymnasium.registry or cfg.env_id in envs.MINATAR_SPECS
            field = "env_kwargs" if cfg.env_kwargs and known else "env_id"
            raise ConfigError(f"{field} {getattr(cfg, field)!r}: {e}", field) from e
        spaces = (gymnasium.spaces.Box, gymnasium.spaces.Discrete)
        obs_space, action_space = env.single_observation_space, env.single_action_space
        if not isinstance(obs_space, spaces) or not isinstance(action_space, spaces):
            env.close()
            raise ConfigError(f"env_id {cfg.env_id!r}: fastrl's trainers need Box or Discrete observation and action "
                              f"spaces; it has observations {obs_space} and actions {action_space}", "env_id")
        return env

    @contextlib.contextmanager
    def _threads(self):
        """torch's intra-op threads set to ``cpu_threads`` for the duration, then restored; on the
        CPU, freed memory kept for reuse from then on (fastrl.utils.memory: no page faults for
        every large activation)."""
        if self.device.type == "cpu":
            keep_freed_memory()
        n = self.config.cpu_threads
        previous = torch.get_num_threads()
        if self.device.type != "cpu" or n is None or n == previous:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    # -- hooks -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Algorithm-specific checks that need the environment (raise ConfigError naming the field)."""

    def _check_image_config(self) -> None:
        """What image observations rule out: continuous actions (the conv networks are categorical),
        running observation statistics (a per-pixel mean and
        std of bool grids is no normalization the conv networks need: refused, not skipped), and
        MLP layer sizes where the convolutional network has one fully-connected layer."""
        cfg = self.config
        if self.network is None and not self.discrete:
            raise ConfigError(f"env_id {cfg.env_id!r} has image observations {self.obs_shape} and continuous actions: "
                              f"fastrl's convolutional networks are for discrete actions (pass network=)", "env_id")
        if getattr(cfg, "normalize_obs", False):
            raise ConfigError(f"normalize_obs: {cfg.env_id} has image observations {self.obs_shape}, which are "
                              f"not normalized (the convolutional network takes them as 0/1)", "normalize_obs")
        if self.network is None and len(cfg.hidden) != 1:
            raise ConfigError(f"hidden: {cfg.env_id} has image observations {self.obs_shape}, for which the network "
                              f"is convolutional with one fully-connected layer: give its one size (e.g. 128), "
                              f"got {tuple(cfg.hidden)}", "hidden")

    def setup(self) -> None:
        """Build networks, optimizers and buffers."""
        raise NotImplementedError

    def train_iteration(self) -> dict[str, torch.Tensor]:
        """Collect experience and update; advance ``self.global_step``; return device scalars."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for a batch of observations (used by evaluation)."""
        raise NotImplementedError

    def checkpointed(self) -> dict[str, Any]:
        """Objects with ``state_dict``/``load_state_dict`` that a checkpoint must hold."""
        raise NotImplementedError

    # -- shared pieces ---------------------------------------------------------------------------
    obs_norm = None  # an ObsNormalizer, for algorithms that normalize observations

    def features(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        """Observations as the networks see them: float32 ``[N, obs_dim]``, normalized when the
        algorithm keeps running statistics (updated only while collecting experience). Image
        observations stay as the env gives them (MinAtar's bool ``[N, H, W, C]``): buffers keep the
        8x smaller bools and the convolutional networks convert them on the device."""
        if self.image_obs:
            return obs
        x = obs.to(torch.float32).reshape(obs.shape[0], -1)
        if self.obs_norm is None:
            return x
        if update:  # statistics of the whole job's batch, in global env order: the same on every rank
            self.obs_norm.stats.update(distributed.all_gather_cat(x))
        return self.obs_norm(x)

    # -- the loop ------------------------------------------------------------------------------
    def record_episodes(self, info: dict) -> None:
        """Keep the finished episodes' returns and lengths on the device until the next log."""
        self._pending.append((info["episode"]["r"], info["episode"]["l"], info["_episode"]))

    def _read_back_episodes(self) -> tuple[list[float], list[float]]:
        """The returns and lengths of the episodes finished since the last row, in the order they
        ended (the pending ones read back from the device: one host sync)."""
        if self._pending:
            ret, length, ended = (torch.stack(x) for x in zip(*self._pending))  # [steps, envs]
            if self.world.distributed:  # every rank's envs, in global env order
                both = distributed.all_gather_cat(torch.stack([ret.double(), length.double(), ended.double()]), 2)
                ret, length, ended = both[0], both[1].long(), both[2].bool()
            self._unlogged[0].extend(ret[ended].tolist())
            self._unlogged[1].extend(length[ended].tolist())
            self._pending.clear()
        return self._unlogged

    def train(self, until_step: int | None = None) -> dict[str, float]:
        """Train until ``total_steps`` (or until ``until_step``, to train in segments: the result is
        the same as one call), then save the checkpoint and the plot when there is an out_dir.

        Ctrl-C (KeyboardInterrupt) saves them too, then propagates. ``stop_request.request()``
        (``fastrl train`` calls it on SIGTERM) ends training at the next iteration (under torchrun:
        the next logged one, where the ranks agree) and saves as at the end; ``stop_request.stopped``
        tells.
        NaN or Inf in a logged metric or in the weights raises TrainingDiverged, leaving the last
        good checkpoint in place."""
        cfg = self.config
        until_step = cfg.total_steps if until_step is None else min(until_step, cfg.total_steps)
        self.stop_request.stopped = False
        with self._threads(), self._run_log() as logger:
            try:
                self._loop(until_step, logger)
            except KeyboardInterrupt:
                self._write_results()  # keep what was trained
                raise
            self._write_results()
        return self.summary()

    @contextlib.contextmanager
    def _run_log(self):
        """Holds out_dir's lock; on the first train() claims the directory; yields the logger."""
        if self.out_dir is None or not self.world.is_main:
            yield None
            return
        with RunLock(self.out_dir):
            if not self._writing_run:
                continuing = self._resume_dir is not None and _same_dir(self._resume_dir, self.out_dir)
                if not continuing:  # a new run here (or a resumed run copied here): checked again, now locked
                    check_new_run(self.out_dir, self.overwrite, check_lock=False)
                    if self.overwrite:
                        clear_run(self.out_dir)
                    if self._resume_dir is not None:
                        copy_run_log(self._resume_dir, self.out_dir)
            remove_orphan_temp_files(self.out_dir)
            logger = RunLogger(self.out_dir, self.config.total_steps, start_step=self.global_step,
                               resume=self._resumed or self._writing_run, progress=self.progress)
            self._writing_run = True
            try:
                yield logger
            finally:
                logger.close()

    def _loop(self, until_step: int, logger: RunLogger | None) -> None:
        cfg = self.config
        while self.global_step < until_step:
            metrics = self._train_iteration()
            self.iteration += 1
            solved = False
            evaluate = cfg.eval_every and self.global_step >= self._next_eval
            # The end of a segment (until_step) is no reason to log: training in segments logs
            # the rows of one call.
            logged = evaluate or self.iteration % cfg.log_every == 0 or self.global_step >= cfg.total_steps
            if logged:
                row = self._log_row(metrics)
                if evaluate:
                    self._next_eval += cfg.eval_every
                    # rank 0 evaluates (every rank would get the same returns)
                    score = _mean(self.evaluate(cfg.eval_episodes)) if self.world.is_main else None
                    row["eval_return"] = distributed.broadcast_object(score)
                self.history.append(row)
                if logger is not None:
                    logger.log(self.global_step, **row)
                self._check_finite(row, metrics)
                score = row.get("eval_return", math.nan) if cfg.eval_every else row["return_last100"]
                solved = cfg.target_return is not None and score >= cfg.target_return
                if cfg.target_return is not None:
                    solved = distributed.broadcast_object(solved)  # every rank stops at the same iteration
            if self.out_dir is not None and cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                self.save()
            if solved:
                break
            # Under torchrun the ranks agree at logged iterations, which they already meet at (an
            # all-reduce more at every one): a rank alone would leave the others in a collective.
            # A request in the last iteration is moot: the run is done.
            agree = self.global_step < until_step and (logged or not self.world.distributed)
            if agree and stopping.agreed(self.stop_request.requested, self.device):
                self.stop_request.honour()
                break

    def _train_iteration(self) -> dict[str, torch.Tensor]:
        try:
            return self.train_iteration()
        except (RuntimeError, ValueError) as e:
            # Non-finite weights fail in sampling or in the env's action checks before a row
            # is logged: report the divergence, not the symptom.
            bad = self._non_finite_state()
            if bad is None:
                raise
            raise TrainingDiverged(f"training diverged by step {self.global_step}: {bad} holds NaN or Inf "
                                   f"({_first_line(e)}){self._kept_note()}") from e

    def _check_finite(self, row: dict[str, float], metrics: dict) -> None:
        bad = [k for k in metrics if k not in self.may_be_nan and not math.isfinite(row[k])]
        if bad:
            quantities = ", ".join(f"{k} = {row[k]}" for k in bad)
            weights = self._non_finite_state()  # the cause, when the weights themselves went bad
            if weights is not None:
                quantities += f"; {weights} holds NaN or Inf"
            raise TrainingDiverged(f"training diverged at step {self.global_step}: {quantities}{self._kept_note()}")

    def _kept_note(self) -> str:
        if self.out_dir is None:
            return ""
        if self._saved_step is None:
            return "; no checkpoint was written"
        path = self.out_dir / "checkpoint.pt"
        return f"; the last good checkpoint, {path} (step {self._saved_step}), is left in place"

    def _write_results(self) -> None:
        if self.out_dir is None:
            return
        self.save()
        if not self.world.is_main:
            return
        from fastrl.utils.plots import plot_learning_curve

        plot_learning_curve(self.out_dir / "metrics.csv", self.out_dir / "learning_curve.png",
                            title=f"{self.algo} on {self.config.env_id}")

    def summary(self) -> dict[str, float]:
        return {
            "steps": self.global_step,
            "iterations": self.iteration,
            "return_last100": _mean(self.recent_returns),
            "episodes_seen": len(self.recent_returns),
        }

    def _log_row(self, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        """Read everything back in one go: the only host sync of an iteration."""
        returns, lengths = self._read_back_episodes()
        self._unlogged = ([], [])
        self.recent_returns.extend(returns)
        row = {"episodic_return": _mean(returns), "episodic_length": _mean(lengths)}
        if self.world.distributed and metrics:
            # Each rank's metric is its share of the global one (a mean over equal shares, or scaled
            # by its share of the rows): their mean over ranks is the whole batch's value.
            (mean,) = distributed.global_sum(torch.stack([torch.as_tensor(v, dtype=torch.float64).to(self.device)
                                                          for v in metrics.values()]))
            metrics = dict(zip(metrics, (mean / self.world.size).unbind()))
        row.update({k: float(v) for k, v in metrics.items()})
        row["return_last100"] = _mean(self.recent_returns)
        return row

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int = 10, seed: int | None = None, max_steps: int = 100_000) -> list[float]:
        """Returns of ``episodes`` episodes of the deterministic policy, one per env of a fresh
        batch of environments (seeded apart from training)."""
        episodes = check_field("episodes", episodes, int, POSITIVE)
        if seed is None:
            seed = (self.config.seed + 1_000_003) % 2**63
        seed = check_field("seed", seed, int, SEED)
        with self._threads():
            env = envs.make(self.config.env_id, episodes, device=self.device, seed=seed, autoreset_mode="same_step",
                            **self.config.env_kwargs)
            obs, _ = env.reset(seed=seed)
            total = torch.zeros(episodes, dtype=torch.float64, device=self.device)
            running = torch.ones(episodes, dtype=torch.bool, device=self.device)
            for step in range(1, max_steps + 1):
                obs, reward, term, trunc, _ = env.step(self.act(obs, deterministic=True))
                total += reward.to(torch.float64) * running
                running &= ~(term | trunc)
                if step % 64 == 0 and not running.any():
                    break
            if running.any():
                raise RuntimeError(f"evaluation: some episodes did not end within {max_steps} steps")
            env.close()
        return total.tolist()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # the episodes finished since the last row: read back now (saving syncs anyway), kept for that row
        unlogged_returns, unlogged_lengths = self._read_back_episodes()
        return {
            "format": CHECKPOINT_FORMAT,
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "global_step": self.global_step,
            "iteration": self.iteration,
            "recent_returns": list(self.recent_returns),
            "unlogged_returns": list(unlogged_returns),
            "unlogged_lengths": list(unlogged_lengths),
            "next_eval": self._next_eval,
            "rng": rng_state(),
            "env": self._env_state(),
            "obs": self.obs,
            "modules": {k: v.state_dict() for k, v in self.checkpointed().items()},
        }

    def load_state_dict(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        """Restore a :meth:`state_dict`; raises CheckpointError (naming ``where``) if it does not
        fit this trainer. After an error the trainer may be partly restored: build a new one."""
        check_checkpoint(state, where)
        if state["algo"] != self.algo:
            raise CheckpointError(f"{where} holds a {state['algo']} run, not {self.algo}")
        state = self._this_rank_state(state, where)
        missing = sorted(set(self.checkpointed()) - set(state["modules"]))
        if missing:
            raise CheckpointError(f"{where} is not a complete {self.algo} checkpoint: no state for {missing}")
        if state["obs"].shape != self.obs.shape:
            raise CheckpointError(f"{where}: its observations have shape {tuple(state['obs'].shape)}, "
                                  f"this trainer's {tuple(self.obs.shape)}")
        try:
            for k, v in self.checkpointed().items():
                v.load_state_dict(state["modules"][k])
            if state["env"] is not None:
                self.env.load_state_dict(state["env"])
            set_rng_state(state["rng"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise CheckpointError(f"{where} does not fit this {self.algo} trainer: {_first_line(e, 300)}") from None
        if state["env"] is not None:
            self.obs = state["obs"].to(self.device)
        else:  # an env that could not be saved starts afresh: the run continues, not exactly
            warnings.warn("this checkpoint holds no environment state: environments are reset, so the "
                          "resumed run is not an exact continuation", RuntimeWarning, stacklevel=2)
            self.obs, _ = self._reset_env((self.config.seed + state["global_step"]) % 2**63)
        self.global_step, self.iteration = state["global_step"], state["iteration"]
        self.recent_returns = deque(state["recent_returns"], maxlen=100)
        self._pending.clear()
        self._unlogged = (list(state.get("unlogged_returns", [])), list(state.get("unlogged_lengths", [])))
        self._next_eval = state["next_eval"]
        self._resumed = True

    def _this_rank_state(self, state: dict[str, Any], where: str) -> dict[str, Any]:
        """The checkpoint as this rank sees it: a job of W processes saved each rank's envs, their
        observations, RNG and per-rank modules in ``shards``; resuming needs the same W."""
        saved = state.get("world_size", 1)
        if isinstance(saved, bool) or not isinstance(saved, int) or saved < 1:
            raise CheckpointError(f"{where}: world_size is not valid ({saved!r})")
        if saved != self.world.size:
            raise CheckpointError(f"{where} was written by a job of {saved} process(es) and this one has "
                                  f"{self.world.size}: resume it with {saved} (torchrun --nproc-per-node={saved}); "
                                  f"each process's environments are in it and are not re-sharded")
        if saved == 1:
            return state
        shards = state.get("shards")
        if not isinstance(shards, list) or len(shards) != saved or not all(isinstance(x, dict) for x in shards):
            raise CheckpointError(f"{where}: its shards are not one per process ({saved})")
        mine = shards[self.world.rank]
        if set(mine) != {"env", "obs", "rng", "modules"}:
            raise CheckpointError(f"{where}: shard {self.world.rank} is not complete")
        return {**state, "env": mine["env"], "obs": mine["obs"], "rng": mine["rng"],
                "modules": {**state["modules"], **mine["modules"]}}

    def _env_state(self):
        """The envs' state for exact resume; None for gymnasium's own envs, which cannot save it."""
        return self.env.state_dict() if hasattr(self.env, "state_dict") else None

    def _non_finite_state(self) -> str | None:
        """The name of the first network or optimizer tensor holding NaN or Inf, or None (one host sync)."""
        named: list[tuple[str, torch.Tensor]] = []
        for key, obj in self.checkpointed().items():
            if isinstance(obj, torch.nn.Module):
                named += [(f"{key}.{n}", t) for n, t in obj.state_dict().items()]
            elif isinstance(obj, torch.optim.Optimizer):
                named += [(f"{key}.state[{i}].{n}", t) for i, s in obj.state_dict()["state"].items()
                          for n, t in s.items() if isinstance(t, torch.Tensor)]
        named = [(n, t) for n, t in named if t.is_floating_point()]
        if not named:
            return None
        finite = torch.stack([t.isfinite().all().cpu() for _, t in named]).tolist()
        return next((n for (n, _), ok in zip(named, finite) if not ok), None)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (default ``out_dir/checkpoint.pt``). Weights or optimizer
        state holding NaN or Inf are never saved: TrainingDiverged, and the previous file stays."""
        default = path is None
        if default:
            if self.out_dir is None:
                raise ValueError("save() needs a path when the trainer has no out_dir")
            path = self.out_dir / "checkpoint.pt"
        bad = self._non_finite_state()
        if bad is not None:
            raise TrainingDiverged(f"training diverged by step {self.global_step}: {bad} holds NaN or Inf, "
                                   f"so no checkpoint is saved{self._kept_note()}")
        state = self.state_dict()
        if self.world.distributed:  # every rank's envs go into rank 0's file
            mine = {"env": state["env"], "obs": state["obs"], "rng": state["rng"],
                    "modules": {k: v for k, v in state["modules"].items() if k in self.per_rank_modules}}
            shards = distributed.gather_objects(_to_cpu(mine))
            saved = None
            if self.world.is_main:
                state.update(world_size=self.world.size, shards=shards)
                saved = save_checkpoint(state, path)
            saved = distributed.broadcast_object(saved)  # every rank returns once the file is written
        else:
            saved = save_checkpoint(state, path)
        if default:
            self._saved_step = self.global_step
        return saved

    @classmethod
    def tuned_config(cls, env_id: str, **overrides) -> TrainConfig:
        """The config ``fastrl train ALGO --env ENV_ID`` runs: the dataclass defaults, then the
        values tuned for this env (fastrl/algos/defaults.py; none for an env without any), then
        ``overrides``. ``PPO(PPOConfig(env_id=...))`` uses the dataclass defaults alone."""
        from fastrl.algos.defaults import tuned_defaults

        check_names(cls.Config, overrides, label=cls.algo)
        return cls.Config(**{**tuned_defaults(cls.algo, env_id), **overrides})

    @classmethod
    def from_checkpoint(cls, path: str | Path, out_dir: str | Path | None = None, progress: bool = False, *,
                        overwrite: bool = False, network: torch.nn.Module | None = None, **overrides) -> Trainer:
        """Rebuild a trainer from a checkpoint file (or a run directory holding ``checkpoint.pt``).

        ``overrides``: config fields to change, e.g. ``total_steps=...`` to train on.
        ``network``: the run's own network, when it was trained with one (a fresh instance of it).
        ``out_dir``: where the resumed run writes. The checkpoint's own directory continues that
        run (its metrics.csv keeps the rows up to the checkpoint). Another directory receives a
        copy of the run's metrics.csv and continues there, leaving the original untouched; like
        a new run's, it must not hold a run unless ``overwrite``."""
        state, path = load_trainer_checkpoint(path, cls.algo)
        check_names(cls.Config, overrides, label=cls.algo)
        names = {f.name for f in dataclasses.fields(cls.Config)}
        saved = with_new_names(cls.Config, state["config"])  # a checkpoint from before a rename reads as new
        if set(saved) - names:
            raise CheckpointError(f"{path}: its config has fields {cls.algo} does not know: "
                                  f"{sorted(set(saved) - names)}")
        try:
            config = validate_config(cls.Config(**{**saved, **overrides}))
        except ConfigError as e:
            if e.field in overrides or (e.field is None and overrides):
                raise
            raise CheckpointError(f"{path}: its config is not valid: {e}") from None
        source = path.parent
        continuing = out_dir is not None and _same_dir(out_dir, source)
        if out_dir is not None and distributed.launched_rank() == 0:  # rank 0 alone writes there
            if continuing and overwrite:
                raise ConfigError(f"overwrite=True would delete the run being resumed ({source})")
            if continuing:
                check_not_locked(Path(out_dir))
            else:
                check_new_run(out_dir, overwrite)
        trainer = cls(config, progress=progress, network=network)
        trainer.load_state_dict(state, where=str(path))
        trainer.out_dir = Path(out_dir) if out_dir is not None else None
        trainer.overwrite = overwrite
        trainer._resume_dir = source
        if continuing:
            trainer._saved_step = trainer.global_step
        return trainer


# -- checkpoint files ------------------------------------------------------------------------

_CHECKPOINT_LAYOUT: dict[str, type | tuple[type, ...]] = {
    "format": int, "algo": str, "config": dict, "global_step": int, "iteration": int, "recent_returns": list,
    "unlogged_returns": list, "unlogged_lengths": list, "next_eval": int, "rng": dict, "env": (dict, type(None)),
    "obs": torch.Tensor, "modules": dict,
}
_NEW_IN_FORMAT_3 = ("unlogged_returns", "unlogged_lengths")


def check_checkpoint(state: Any, where: str = "checkpoint") -> None:
    """Raise CheckpointError (naming ``where``) unless ``state`` has the layout of a trainer's
    :meth:`Trainer.state_dict`."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} is not a fastrl trainer checkpoint (it holds a {type(state).__name__})")
    layout = {k: v for k, v in _CHECKPOINT_LAYOUT.items() if state.get("format") != 2 or k not in _NEW_IN_FORMAT_3}
    missing = [k for k in layout if k not in state]
    if missing:
        raise CheckpointError(f"{where} is not a complete fastrl trainer checkpoint: it has no {', '.join(missing)}")
    if state["format"] not in READABLE_FORMATS:
        raise CheckpointError(f"{where} has checkpoint format {state['format']!r}; this fastrl reads "
                              f"formats {' and '.join(map(str, READABLE_FORMATS))}")
    for key, kind in layout.items():
        value = state[key]
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            raise CheckpointError(f"{where}: {key} is not valid ({type(value).__name__})")
    for key in ("recent_returns", "unlogged_returns", "unlogged_lengths"):
        if key in layout and not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in state[key]):
            raise CheckpointError(f"{where}: {key} is not a list of numbers")
    if "unlogged_returns" in layout and len(state["unlogged_returns"]) != len(state["unlogged_lengths"]):
        raise CheckpointError(f"{where}: unlogged_returns and unlogged_lengths differ in length")


def load_trainer_checkpoint(path: str | Path, algo: str | None = None) -> tuple[dict[str, Any], Path]:
    """The checked state of a trainer's checkpoint (a file, or a run directory holding
    ``checkpoint.pt``) and the file's path; ``algo`` also checks which algorithm wrote it."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    state = load_checkpoint(path)
    check_checkpoint(state, str(path))
    if algo is not None and state["algo"] != algo:
        raise CheckpointError(f"{path} holds a {state['algo']} run, not {algo}: resume it as {state['algo']}")
    return state, path


def _config_of_env(config: TrainConfig, env) -> TrainConfig:
    """``config`` with the env_id and env_kwargs ``env`` (a fastrl VectorEnv) was made with, so that
    evaluation envs and a resumed run are made alike (gymnasium's own envs, which do not keep
    their keyword arguments, keep the config's besides max_episode_steps)."""
    from fastrl.envs import ClassicVectorEnv, GymnasiumVectorEnv

    if isinstance(env, ClassicVectorEnv):
        defaults = getattr(env.spec_, "params", {})
        own = {k: v for k, v in env.params.items() if k not in defaults or v != defaults[k]}
        kwargs = {"max_episode_steps": env.max_episode_steps, **own}
        env_id = env.spec_.id
    elif isinstance(env, GymnasiumVectorEnv):
        kwargs = {**config.env_kwargs, "max_episode_steps": env.max_episode_steps}
        env_id = env.env_id
    else:
        raise TypeError(f"env must be a fastrl VectorEnv (fastrl.envs.make(...)), got {type(env).__name__}")
    if env.closed:
        raise ValueError("env is closed: make a new one")
    return dataclasses.replace(config, env_id=env_id, env_kwargs=kwargs)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one (``cuda`` without an index is the current GPU)."""
    if a.type != b.type:
        return False
    index = lambda d: d.index if d.index is not None or d.type != "cuda" else torch.cuda.current_device()  # noqa: E731
    return index(a) == index(b)


def _to_cpu(obj):
    """``obj`` with every tensor in it (in dicts, lists, tuples) moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _same_dir(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (used for ``--help``)."""
    return dict(_field_docs(cls))


@functools.cache  # parsing the source costs milliseconds per class; the CLI asks for every algorithm
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan
