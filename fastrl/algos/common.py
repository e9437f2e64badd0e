"""What every trainer shares: the common config fields, the environment, the training loop with
logging and checkpoints, and evaluation. An algorithm file adds its networks (``setup``), one
iteration of training (``train_iteration``), its policy (``act``) and what it checkpoints."""

from __future__ import annotations

import ast
import dataclasses
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

from fastrl import envs
from fastrl.utils.checkpoint import load_checkpoint, save_checkpoint
from fastrl.utils.logging import RunLogger
from fastrl.utils.seeding import rng_state, seed_everything, set_rng_state


@dataclass
class TrainConfig:
    """Fields every trainer has."""

    env_id: str = "CartPole-v1"
    """gymnasium id; CartPole-v1, Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0 and
    Pendulum-v1 run natively, any other id on gymnasium's own vector env."""
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
    """torch intra-op threads when training on the CPU (process-wide; None keeps torch's setting).
    Small networks run fastest on one: extra threads only add synchronization, and collapse when
    another process holds a core."""


class Trainer:
    """The loop shared by every algorithm; subclasses define the hooks below."""

    algo: ClassVar[str]
    Config: ClassVar[type[TrainConfig]]
    autoreset_mode: ClassVar[str] = "same_step"  # final_obs in info: bootstrap truncations

    def __init__(self, config: TrainConfig, out_dir: str | Path | None = None, progress: bool = False):
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        check_common(config)
        self.device = torch.device(config.device)
        if self.device.type == "cpu" and config.cpu_threads is not None:
            torch.set_num_threads(config.cpu_threads)
        seed_everything(config.seed)
        self.env = envs.make(config.env_id, config.num_envs, device=self.device, seed=config.seed,
                             autoreset_mode=self.autoreset_mode)
        self.discrete = isinstance(self.env.single_action_space, gymnasium.spaces.Discrete)
        self.obs_dim = int(math.prod(self.env.single_observation_space.shape))
        self.action_dim = (int(self.env.single_action_space.n) if self.discrete
                           else int(math.prod(self.env.single_action_space.shape)))
        self.validate()
        self.global_step = 0
        self.iteration = 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.history: list[dict[str, float]] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._next_eval = config.eval_every
        self._resumed = False
        self.setup()
        self.obs, _ = self.env.reset(seed=config.seed)

    # -- hooks -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Algorithm-specific config checks (raise ValueError naming the field)."""

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
        algorithm keeps running statistics (updated only while collecting experience)."""
        x = obs.to(torch.float32).reshape(obs.shape[0], -1)
        return self.obs_norm(x, update=update) if self.obs_norm is not None else x

    # -- the loop ------------------------------------------------------------------------------
    def record_episodes(self, info: dict) -> None:
        """Keep the finished episodes' returns and lengths on the device until the next log."""
        self._pending.append((info["episode"]["r"], info["episode"]["l"], info["_episode"]))

    def train(self, until_step: int | None = None) -> dict[str, float]:
        """Train until ``total_steps`` (or until ``until_step``, to train in segments: the result is
        the same as one call), then save the checkpoint and the plot when there is an out_dir."""
        cfg = self.config
        until_step = cfg.total_steps if until_step is None else min(until_step, cfg.total_steps)
        logger = None
        if self.out_dir is not None:
            logger = RunLogger(self.out_dir, cfg.total_steps, start_step=self.global_step,
                               resume=self._resumed, progress=self.progress)
        try:
            while self.global_step < until_step:
                metrics = self.train_iteration()
                self.iteration += 1
                solved = False
                evaluate = cfg.eval_every and self.global_step >= self._next_eval
                if evaluate or self.iteration % cfg.log_every == 0 or self.global_step >= until_step:
                    row = self._log_row(metrics)
                    if evaluate:
                        self._next_eval += cfg.eval_every
                        row["eval_return"] = _mean(self.evaluate(cfg.eval_episodes))
                    self.history.append(row)
                    if logger is not None:
                        logger.log(self.global_step, **row)
                    score = row.get("eval_return", math.nan) if cfg.eval_every else row["return_last100"]
                    solved = cfg.target_return is not None and score >= cfg.target_return
                if self.out_dir is not None and cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                    self.save()
                if solved:
                    break
        finally:
            if logger is not None:
                logger.close()
        if self.out_dir is not None:
            self.save()
            from fastrl.utils.plots import plot_learning_curve

            plot_learning_curve(self.out_dir / "metrics.csv", self.out_dir / "learning_curve.png",
                                title=f"{self.algo} on {cfg.env_id}")
        return self.summary()

    def summary(self) -> dict[str, float]:
        return {
            "steps": self.global_step,
            "iterations": self.iteration,
            "return_last100": _mean(self.recent_returns),
            "episodes_seen": len(self.recent_returns),
        }

    def _log_row(self, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        """Read everything back in one go: the only host sync of an iteration."""
        returns, lengths = [], []
        if self._pending:
            ret, length, ended = (torch.stack(x) for x in zip(*self._pending))
            returns, lengths = ret[ended].tolist(), length[ended].tolist()
            self._pending.clear()
        self.recent_returns.extend(returns)
        row = {"episodic_return": _mean(returns), "episodic_length": _mean(lengths)}
        row.update({k: float(v) for k, v in metrics.items()})
        row["return_last100"] = _mean(self.recent_returns)
        return row

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, episodes: int = 10, seed: int | None = None, max_steps: int = 100_000) -> list[float]:
        """Returns of ``episodes`` episodes of the deterministic policy, one per env of a fresh
        batch of environments (seeded apart from training)."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        seed = self.config.seed + 1_000_003 if seed is None else seed
        env = envs.make(self.config.env_id, episodes, device=self.device, seed=seed, autoreset_mode="same_step")
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
        return {
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "global_step": self.global_step,
            "iteration": self.iteration,
            "recent_returns": list(self.recent_returns),
            "next_eval": self._next_eval,
            "rng": rng_state(),
            "env": self._env_state(),
            "obs": self.obs,
            "modules": {k: v.state_dict() for k, v in self.checkpointed().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["algo"] != self.algo:
            raise ValueError(f"checkpoint is for {state['algo']}, not {self.algo}")
        for k, v in self.checkpointed().items():
            v.load_state_dict(state["modules"][k])
        if state["env"] is not None:
            self.env.load_state_dict(state["env"])
            self.obs = state["obs"].to(self.device)
        else:  # an env that could not be saved starts afresh: the run continues, not exactly
            warnings.warn("this checkpoint holds no environment state: environments are reset, so the "
                          "resumed run is not an exact continuation", RuntimeWarning, stacklevel=2)
            self.obs, _ = self.env.reset(seed=self.config.seed + state["global_step"])
        self.global_step, self.iteration = state["global_step"], state["iteration"]
        self.recent_returns = deque(state["recent_returns"], maxlen=100)
        self._next_eval = state["next_eval"]
        set_rng_state(state["rng"])
        self._resumed = True

    def _env_state(self):
        """The envs' state for exact resume; None for gymnasium's own envs, which cannot save it."""
        return self.env.state_dict() if hasattr(self.env, "state_dict") else None

    def save(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (default ``out_dir/checkpoint.pt``)."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("save() needs a path when the trainer has no out_dir")
            path = self.out_dir / "checkpoint.pt"
        return save_checkpoint(self.state_dict(), path)

    @classmethod
    def from_checkpoint(cls, path: str | Path, out_dir: str | Path | None = None, progress: bool = False,
                        **overrides) -> Trainer:
        """Rebuild a trainer from a checkpoint (``overrides`` e.g. total_steps=... to train on)."""
        state = load_checkpoint(path)
        config = cls.Config(**{**state["config"], **overrides})
        trainer = cls(config, out_dir=out_dir, progress=progress)
        trainer.load_state_dict(state)
        return trainer


def check_common(cfg: TrainConfig) -> None:
    """Errors at start-up, not mid-run."""
    for name in ("num_envs", "total_steps", "log_every", "eval_episodes"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if cfg.cpu_threads is not None and (isinstance(cfg.cpu_threads, bool) or not isinstance(cfg.cpu_threads, int)
                                        or cfg.cpu_threads < 1):
        raise ValueError(f"cpu_threads must be a positive int or None, got {cfg.cpu_threads!r}")
    for name in ("checkpoint_every", "eval_every"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    try:
        device = torch.device(cfg.device)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {cfg.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} but CUDA is not available")


def check_positive(cfg, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(cfg, name)
        ok = value >= 0 if allow_zero else value > 0
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok:
            raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_unit(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (used for ``--help``)."""
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
