"""The op registry, in the spirit of PyTorch's OpInfo: per public op of fastrl.ops, its sample
inputs (per device), its bad inputs with the error they must raise, its spec (the PyTorch
reference) and oracle (a scalar loop of tests/ops/oracles.py), and tolerances. test_opinfo.py
runs every generic check from it; op-specific semantics stay in test_<op>.py.

Adding an op's tests = one ``OpInfo`` in ``OPS``. Samples and bad inputs are built lazily from
``make(device)``, with the same values on every device (drawn on the CPU, then moved).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fastrl.ops import (
    discounted_returns,
    gae,
    gaussian_ppo_loss,
    ppo_loss,
    ppo_loss_from_hidden,
    rollout_next_values,
    token_logprobs,
    value_loss,
)
from fastrl.ops.ppo_loss import (
    KL_ESTIMATORS,
    NORMALIZATIONS,
    ppo_loss_reference,
    token_logprobs_reference,
)
from fastrl.ops.returns import discounted_returns_reference, gae_reference
from tests.ops.helpers import FULL_OPTIONS, GAMMA, LAM, make_inputs, make_rollout, padding_mask
from tests.ops.oracles import (
    discounted_returns_loop,
    gae_loop,
    gaussian_ppo_loss_loop,
    ppo_loss_loop,
    rollout_next_values_loop,
    token_logprobs_loop,
    value_loss_loop,
)

DEVICE_TYPES = ("cpu", "cuda")


@dataclass(frozen=True)
class Tol:
    """Tolerances of a comparison: outputs to ``rtol``/``atol``; gradients to ``grad_rtol`` and
    ``grad_atol`` times the largest |gradient| (they scale like 1 / V). ``None``: bit for bit."""

    rtol: float
    atol: float
    grad_rtol: float = 0.0
    grad_atol: float = 0.0


BITWISE = None


@dataclass(frozen=True)
class Sample:
    """One input of an op: ``make(device)`` gives its keyword arguments. Tensors that require a
    gradient are the ones whose gradients are compared. ``dtype`` picks the tolerance."""

    name: str
    make: Callable[[str], dict]
    dtype: torch.dtype = torch.float32
    oracle: bool = True  # also compared with the op's scalar oracle
    devices: tuple[str, ...] = DEVICE_TYPES


@dataclass(frozen=True)
class BadInput:
    """Arguments that must raise ``error`` with a message matching ``match`` and naming ``arg``."""

    name: str
    make: Callable[[str], dict]
    error: type[Exception]
    arg: str
    match: str


@dataclass(frozen=True)
class OpInfo:
    name: str
    op: Callable
    samples: tuple[Sample, ...]
    bad_inputs: tuple[BadInput, ...]
    oracle: Callable | None  # the op's keywords on the CPU (gradient inputs as float64 leaves)
    oracle_tol: Callable[[torch.dtype], Tol | None]
    # The spec, with the op's keywords; None for ops with no native kernel (the op is the spec).
    reference: Callable | None = None
    reference_tol: Callable[[torch.dtype], Tol | None] = lambda dtype: BITWISE
    # Per torch.ops.fastrl op the op calls: its (schema) arguments that get a gradient.
    native_grad_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    opcheck: tuple[str, ...] = ()  # samples whose native calls go through opcheck and TorchScript
    compile: tuple[str, ...] = ()  # samples run through torch.compile(fullgraph=True)
    gradcheck: tuple[str, ...] = ()  # float64 samples for gradcheck
    # "check-sample" -> why it fails today: an xfail (strict: it fails the run once fixed).
    known_failures: dict[str, str] = field(default_factory=dict)

    @property
    def native(self) -> bool:
        return self.reference is not None

    def sample(self, name: str) -> Sample:
        return next(s for s in self.samples if s.name == name)

    def bad_input(self, name: str) -> BadInput:
        return next(b for b in self.bad_inputs if b.name == name)


def _tensors_to(device, **kwargs):
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _time_major(x, dim, dtype=None):
    """``x`` with time moved to dim 0 and the batch flattened: ``[T, N]`` (flags as bool)."""
    x = x.movedim(dim, 0)
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    return (x != 0) if dtype is None else x.to(dtype)


def _changed(make_args):
    """``good(**change)`` of an op's bad inputs: a ``make(device)`` giving ``make_args(device)``
    with ``change`` applied (a callable maps the good value, anything else replaces it)."""
    def good(**change):
        def make(d):
            args = make_args(d)
            return {k: fn(args.get(k)) if callable(fn) else fn for k, fn in dict(args, **change).items()}

        return make

    return good


def _compute_dtype(*xs):
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


# --------------------------------------------------------------------------- gae


def gae_oracle(rewards, values, next_values, terminated, done, gamma, lam, mask=None, time_dim=0):
    dim, dtype = time_dim % rewards.ndim, _compute_dtype(rewards, values, next_values)
    cols = [_time_major(x, dim, dtype) for x in (rewards, values, next_values)]
    flags = [None if x is None else _time_major(x, dim) for x in (terminated, done, mask)]
    adv, ret = gae_loop(*cols, *flags[:2], gamma, lam, flags[2])
    shape = rewards.movedim(dim, 0).shape
    return adv.reshape(shape).movedim(0, dim), ret.reshape(shape).movedim(0, dim)


def gae_spec(rewards, values, next_values, terminated, done, gamma, lam, mask=None, time_dim=0):
    """gae_reference on time-major ``[T, N]`` copies in the compute dtype, on their device."""
    dim, dtype = time_dim % rewards.ndim, _compute_dtype(rewards, values, next_values)
    cols = [_time_major(x, dim, dtype).contiguous() for x in (rewards, values, next_values)]
    flags = [None if x is None else _time_major(x, dim).contiguous() for x in (terminated, done, mask)]
    adv, ret = gae_reference(*cols, *flags[:2], gamma, lam, flags[2])
    shape = rewards.movedim(dim, 0).shape
    return adv.reshape(shape).movedim(0, dim), ret.reshape(shape).movedim(0, dim)


def _gae_samples():
    shapes = {"T1_B1": (1, (1,)), "T1_B7": (1, (7,)), "T5_B1": (5, (1,)), "T33_B17": (33, (17,)),
              "T128_B64": (128, (64,)), "T64_B3x5": (64, (3, 5)), "T200_B130": (200, (130,))}  # fmt: skip
    flags = {"mixed": dict(p_term=0.05, p_trunc=0.03), "none_done": dict(p_term=0.0, p_trunc=0.0),
             "all_done": dict(p_term=0.5, p_trunc=1.0), "all_terminated": dict(p_term=1.0, p_trunc=0.0)}  # fmt: skip
    keys = ("rewards", "values", "next_values", "terminated", "done")

    def rollout(T, batch, dtype, **kw):
        return lambda d: dict(zip(keys, make_rollout(T, batch, dtype, d, **kw)), gamma=GAMMA, lam=LAM)

    for (s, (T, batch)), (f, kw), dtype in itertools.product(shapes.items(), flags.items(), (torch.float32,
                                                                                             torch.float64)):
        yield Sample(f"{s}-{f}-{_dt(dtype)}", rollout(T, batch, dtype, **kw), dtype)

    def done_at_end(d):  # truncation on the last step: bootstraps from next_values there
        args = rollout(9, (4,), torch.float64, p_term=0.0, p_trunc=0.0)(d)
        args["done"][-1] = True
        args["terminated"][-1, :2] = True
        return args

    def masked(dtype):
        def make(d):
            return dict(rollout(60, (9,), dtype)(d), mask=padding_mask(60, 9).to(d))

        return make

    def batch_first(time_dim):
        def make(d):
            args = rollout(37, (11,), torch.float64)(d)
            return dict(args, time_dim=time_dim, **{k: args[k].T.contiguous() for k in keys})

        return make

    def strided(d):  # strided in both dims
        return {k: v[::2, 1::3] if isinstance(v, torch.Tensor) else v for k, v in rollout(80, (30,),
                                                                                          torch.float32)(d).items()}

    def float_flags(d):  # flags as 0/1 floats and ints: same as bool
        args = rollout(20, (5,), torch.float32)(d)
        return dict(args, terminated=args["terminated"].float(), done=args["done"].to(torch.int32))

    def half(d):  # half precision inputs are computed in float32
        args = rollout(20, (5,), torch.float32)(d)
        return dict(args, rewards=args["rewards"].bfloat16(), values=args["values"].half(),
                    next_values=args["next_values"].bfloat16())  # fmt: skip

    def nonfinite(dtype):  # inf and NaN propagate within their episode only (test_returns has more)
        def make(d):
            args = rollout(6, (3,), dtype, p_term=0.0, p_trunc=0.0)(d)
            args["done"][1, 0] = args["terminated"][1, 0] = args["done"][2, 1] = True
            args["rewards"][3, 0], args["values"][4, 0], args["next_values"][2, 1] = math.inf, math.nan, -math.inf
            return args

        return make

    yield Sample("done_at_end", done_at_end, torch.float64)
    yield Sample("masked-float32", masked(torch.float32))
    yield Sample("masked-float64", masked(torch.float64), torch.float64)
    yield Sample("batch_first-time_dim1", batch_first(1), torch.float64)
    yield Sample("batch_first-time_dim-1", batch_first(-1), torch.float64)
    yield Sample("strided", strided)
    yield Sample("float_and_int_flags", float_flags)
    yield Sample("half_inputs", half)
    yield Sample("nonfinite-float32", nonfinite(torch.float32))
    yield Sample("nonfinite-float64", nonfinite(torch.float64), torch.float64)
    yield Sample("empty-T0", rollout(0, (4,), torch.float32))
    yield Sample("empty-B0", rollout(5, (0,), torch.float32))


def _gae_bad_inputs():
    def args(d):
        r, v, nv, term, done = make_rollout(8, (4,), device=d)
        return dict(rewards=r, values=v, next_values=nv, terminated=term, done=done, gamma=GAMMA, lam=LAM)

    good = _changed(args)

    return (
        BadInput("int_rewards", good(rewards=lambda x: x.long()), TypeError, "rewards", "must be a floating"),
        BadInput("list_rewards", good(rewards=[1.0, 2.0]), TypeError, "rewards", "must be a torch.Tensor"),
        BadInput("values_shape", good(values=lambda x: x[:, :3]), ValueError, "values", "must have the shape"),
        BadInput("int_next_values", good(next_values=lambda x: x.int()), TypeError, "next_values",
                 "must be a floating"),
        BadInput("done_shape", good(done=lambda x: x[:4]), ValueError, "done", "must have the shape"),
        BadInput("complex_done", good(done=lambda x: x.to(torch.complex64)), TypeError, "done", "must be bool"),
        BadInput("terminated_device", good(terminated=lambda x: x.to("meta")), ValueError, "terminated",
                 "is on meta"),
        BadInput("values_device", good(values=lambda x: x.to("meta")), ValueError, "values", "is on meta"),
        BadInput("mask_shape", good(mask=torch.ones(8, 5, dtype=torch.bool)), ValueError, "mask",
                 "must have the shape"),
        BadInput("gamma_above_1", good(gamma=1.5), ValueError, "gamma", r"must be in \[0, 1\]"),
        BadInput("gamma_just_above_1", good(gamma=1.0 + 1e-9), ValueError, "gamma", r"must be in \[0, 1\]"),
        BadInput("gamma_nan", good(gamma=math.nan), ValueError, "gamma", r"must be in \[0, 1\]"),
        BadInput("gamma_tensor", good(gamma=torch.ones(2)), ValueError, "gamma", "must be a number"),
        BadInput("lam_below_0", good(lam=-0.1), ValueError, "lam", r"must be in \[0, 1\]"),
        BadInput("lam_str", good(lam="0.9"), TypeError, "lam", "must be a real number"),
        BadInput("time_dim", good(time_dim=2), ValueError, "time_dim", "must be in"),
        BadInput("time_dim_float", good(time_dim=0.0), TypeError, "time_dim", "must be an int"),
    )  # fmt: skip


def _dt(dtype):
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------- discounted returns


def returns_oracle(rewards, done, gamma, bootstrap=None, mask=None, time_dim=0):
    dim = time_dim % rewards.ndim
    dtype = _compute_dtype(rewards, *([] if bootstrap is None else [bootstrap]))
    shape = rewards.movedim(dim, 0).shape
    boot = torch.zeros(shape[1:], dtype=dtype) if bootstrap is None else bootstrap.to(dtype)
    done = torch.zeros(rewards.shape, dtype=torch.bool) if done is None else done
    out = discounted_returns_loop(_time_major(rewards, dim, dtype), _time_major(done, dim), gamma,
                                  boot.reshape(-1), None if mask is None else _time_major(mask, dim))  # fmt: skip
    return out.reshape(shape).movedim(0, dim)


def returns_spec(rewards, done, gamma, bootstrap=None, mask=None, time_dim=0):
    dim = time_dim % rewards.ndim
    dtype = _compute_dtype(rewards, *([] if bootstrap is None else [bootstrap]))
    shape = rewards.movedim(dim, 0).shape
    boot = rewards.new_zeros(shape[1:], dtype=dtype) if bootstrap is None else bootstrap.to(dtype)
    done = torch.zeros_like(rewards, dtype=torch.bool) if done is None else done
    out = discounted_returns_reference(_time_major(rewards, dim, dtype).contiguous(), _time_major(done, dim), gamma,
                                       boot.reshape(-1), None if mask is None else _time_major(mask, dim))  # fmt: skip
    return out.reshape(shape).movedim(0, dim)


def _returns_samples():
    def rollout(T, batch, dtype, boot=True, **kw):
        def make(d):
            r, _, _, _, done = make_rollout(T, batch, dtype, d, **kw)
            g = torch.Generator().manual_seed(1)
            args = dict(rewards=r, done=done, gamma=GAMMA)
            if boot:
                args["bootstrap"] = torch.randn(batch, generator=g, dtype=torch.float64).to(dtype).to(d)
            return args

        return make

    shapes = {"T1_B1": (1, (1,)), "T1_B7": (1, (7,)), "T5_B1": (5, (1,)), "T33_B17": (33, (17,)),
              "T128_B64": (128, (64,)), "T64_B3x5": (64, (3, 5)), "T200_B130": (200, (130,))}  # fmt: skip
    for (s, (T, batch)), dtype in itertools.product(shapes.items(), (torch.float32, torch.float64)):
        yield Sample(f"{s}-{_dt(dtype)}", rollout(T, batch, dtype), dtype)

    def masked(dtype):
        return lambda d: dict(rollout(60, (9,), dtype, boot=False)(d), mask=padding_mask(60, 9).to(d))

    def batch_first(time_dim):
        def make(d):
            args = rollout(37, (11,), torch.float64, boot=False)(d)
            return dict(args, time_dim=time_dim, rewards=args["rewards"].T.contiguous(), done=args["done"].T)

        return make

    def unflattenable(d):  # a batch that cannot be flattened without a copy; no done given
        r3 = torch.randn(10, 4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        return dict(rewards=r3.to(d).transpose(1, 2), done=None, gamma=GAMMA)

    def strided(d):
        args = rollout(12, (5,), torch.float32)(d)
        return dict(args, rewards=args["rewards"][::2], done=args["done"][::2], gamma=1.0)

    def done_by_hand(d):  # G_t of a worked example: a done at t = 1, bootstrap 8, gamma 1/2
        r = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]], dtype=torch.float64, device=d)
        done = torch.tensor([[False], [True], [False], [False], [False]], device=d)
        return dict(rewards=r, done=done, gamma=0.5, bootstrap=torch.tensor([8.0], dtype=torch.float64, device=d))

    def nonfinite_bootstrap(d):
        args = rollout(6, (3,), torch.float32, p_term=0.0, p_trunc=0.0)(d)
        args["done"][1, 0] = True
        args["rewards"][3, 0] = math.nan
        args["bootstrap"][1] = math.inf
        return args

    def half_with_float64_bootstrap(d):  # computed in float64 (the bootstrap's dtype)
        args = rollout(9, (3,), torch.float32)(d)
        return dict(args, rewards=args["rewards"].half(), bootstrap=args["bootstrap"].double())

    yield Sample("masked-float32", masked(torch.float32))
    yield Sample("masked-float64", masked(torch.float64), torch.float64)
    yield Sample("batch_first-time_dim1", batch_first(1), torch.float64)
    yield Sample("batch_first-time_dim-1", batch_first(-1), torch.float64)
    yield Sample("unflattenable_batch-no_done", unflattenable, torch.float64)
    yield Sample("strided-gamma1", strided)
    yield Sample("done_by_hand", done_by_hand, torch.float64)
    yield Sample("nonfinite", nonfinite_bootstrap)
    yield Sample("half_rewards-float64_bootstrap", half_with_float64_bootstrap, torch.float64)
    yield Sample("empty-T0", rollout(0, (4,), torch.float32))
    yield Sample("empty-B0", rollout(5, (0,), torch.float32))


def _returns_bad_inputs():
    def args(d):
        r, _, _, _, done = make_rollout(8, (4,), device=d)
        return dict(rewards=r, done=done, gamma=GAMMA)

    good = _changed(args)

    return (
        BadInput("int_rewards", good(rewards=lambda x: x.long()), TypeError, "rewards", "must be a floating"),
        BadInput("0-dim_rewards", good(rewards=torch.tensor(1.0), done=None), ValueError, "rewards",
                 "must have a time dimension"),
        BadInput("done_shape", good(done=lambda x: x[:, :2]), ValueError, "done", "must have the shape"),
        BadInput("complex_done", good(done=lambda x: x.to(torch.complex64)), TypeError, "done", "must be bool"),
        BadInput("mask_shape", good(mask=torch.ones(1, 8, 4, dtype=torch.bool)), ValueError, "mask",
                 "must have the shape"),
        BadInput("bootstrap_shape", good(bootstrap=torch.zeros(5)), ValueError, "bootstrap",
                 "must have the batch shape"),
        BadInput("int_bootstrap", good(bootstrap=torch.zeros(4, dtype=torch.long)), TypeError, "bootstrap",
                 "must be a floating"),
        BadInput("bootstrap_device", good(bootstrap=torch.zeros(4, device="meta")), ValueError, "bootstrap",
                 "is on meta"),
        BadInput("gamma_2", good(gamma=2.0), ValueError, "gamma", r"must be in \[0, 1\]"),
        BadInput("time_dim", good(time_dim=3), ValueError, "time_dim", "must be in"),
    )  # fmt: skip


# --------------------------------------------------------------------------- rollout_next_values


def next_values_oracle(values, last_value, final_values=None, final_mask=None, time_dim=0):
    dim = time_dim % values.ndim
    moved = [None if x is None else x.movedim(dim, 0) for x in (values, final_values, final_mask)]
    return rollout_next_values_loop(moved[0], last_value, moved[1], moved[2]).movedim(0, dim)


def _next_values_samples():
    def make_values(T, batch, final=False, time_dim=0):
        def make(d):
            g = torch.Generator().manual_seed(3)
            args = dict(values=torch.randn(T, *batch, generator=g), last_value=torch.randn(batch, generator=g))
            if final:
                args["final_values"] = torch.randn(T, *batch, generator=g, dtype=torch.float64)
                args["final_mask"] = torch.rand(T, *batch, generator=g) < 0.3
            if time_dim:
                args = {k: v.movedim(0, time_dim) if v.ndim > len(batch) else v for k, v in args.items()}
                args["time_dim"] = time_dim
            return _tensors_to(d, **args)

        return make

    yield Sample("T4_B3", make_values(4, (3,)))
    yield Sample("T6_B2x3-final", make_values(6, (2, 3), final=True))
    yield Sample("batch_first-final", make_values(5, (4,), final=True, time_dim=1))
    yield Sample("T1_B1", make_values(1, (1,)))
    yield Sample("empty-T0", make_values(0, (3,)))


def _next_values_bad_inputs():
    good = _changed(lambda d: dict(values=torch.zeros(4, 3, device=d), last_value=torch.zeros(3, device=d),
                                   final_values=torch.zeros(4, 3, device=d),
                                   final_mask=torch.zeros(4, 3, dtype=torch.bool, device=d)))

    return (
        BadInput("0-dim_values", good(values=torch.tensor(1.0)), ValueError, "values", "must have a time dimension"),
        BadInput("last_value_device", good(last_value=torch.zeros(3, device="meta")), ValueError, "last_value",
                 "is on meta but values is on"),
        BadInput("final_values_device", good(final_values=torch.zeros(4, 3, device="meta")), ValueError,
                 "final_values", "is on meta but values is on"),
        BadInput("final_mask_device", good(final_mask=torch.zeros(4, 3, dtype=torch.bool, device="meta")),
                 ValueError, "final_mask", "is on meta"),
        BadInput("last_value_shape", good(last_value=torch.zeros(4)), ValueError, "last_value",
                 "must have the batch shape"),
        BadInput("int_last_value", good(last_value=torch.zeros(3, dtype=torch.long)), TypeError, "last_value",
                 "must be a floating"),
        BadInput("final_values_shape", good(final_values=torch.zeros(4, 2)), ValueError, "final_values",
                 "must have the shape of values"),
        BadInput("final_values_alone", good(final_mask=None), ValueError, "final_mask", "go together"),
        BadInput("time_dim", good(time_dim=2), ValueError, "time_dim", "must be in"),
    )  # fmt: skip


# --------------------------------------------------------------------------- the PPO loss


def ppo_tolerances(dtype):
    """Against the float64 oracle: float32/bfloat16/float16 logits (computed in float32) give the
    loss and stats to 1e-5, gradients to rtol 1e-4 and atol 1e-5 * max|grad|; bfloat16 and float16
    gradients are rounded to that dtype (1e-2). float64: 1e-10 / 1e-12, gradients rtol 1e-9."""
    if dtype == torch.float64:
        return Tol(1e-10, 1e-12, 1e-9, 1e-12)
    if dtype in (torch.bfloat16, torch.float16):
        return Tol(1e-5, 1e-5, 1e-2, 1e-2)
    return Tol(1e-5, 1e-5, 1e-4, 1e-5)


def ppo_reference_tolerances(dtype):
    """Native vs the reference: sums in another order; the gradient's tolerance 10x looser."""
    if dtype == torch.float64:
        return Tol(1e-10, 1e-12, 1e-9, 1e-11)
    if dtype in (torch.bfloat16, torch.float16):
        return Tol(1e-5, 1e-5, 1e-2, 1e-2)
    return Tol(1e-5, 1e-5, 1e-4, 1e-4)


def _without(kwargs, *names):
    return {k: v for k, v in kwargs.items() if k not in names}


def ppo_oracle(**kwargs):
    loss, stats, _ = ppo_loss_loop(**_without(kwargs, "validate"))
    return loss, stats


def ppo_spec(**kwargs):
    return ppo_loss_reference(**_without(kwargs, "validate"))


# Every KL estimator with every normalization (full options: both clips, the dual clip, an entropy
# bonus, T != 1), and the option combinations around them.
BRANCH_OPTIONS = {
    f"{estimator}-{normalize}": dict(FULL_OPTIONS, kl_estimator=estimator, normalize=normalize, kl_coef=0.3,
                                     max_len=11 if normalize == "constant" else None)
    for estimator in KL_ESTIMATORS
    for normalize in NORMALIZATIONS
}  # fmt: skip
BRANCH_OPTIONS.update({
    "defaults-no_ref": dict(),  # symmetric clip, no KL, no entropy, T = 1, no reference
    "ref_without_kl_coef": dict(clip_low=0.2, kl_estimator="k2"),  # kl_ref is reported, loss has no KL
    "no_dual_clip-T2": dict(clip_high=0.5, temperature=2.0, normalize="token_mean"),
    "clip_low_0-negative_entropy": dict(clip_low=0.0, clip_high=0.28, entropy_coef=-0.1, temperature=0.3,
                                        dual_clip=3.0, normalize="constant"),
})  # fmt: skip


# The options of issue 17 on the branch inputs (with token weights where the name says so):
# sequence-level ratios (GSPO), CISPO, per-token weights on pg, the ratio-weighted KL.
OPTION_CASES = {
    "gspo-seq_mean_token_mean": dict(FULL_OPTIONS, importance_level="sequence"),
    "gspo-token_mean-k1-weights": dict(FULL_OPTIONS, importance_level="sequence", normalize="token_mean",
                                       kl_estimator="k1", kl_coef=0.3),
    "gspo-constant-no_ref": dict(importance_level="sequence", clip_high=0.28, normalize="constant"),
    "cispo": dict(FULL_OPTIONS, policy_loss="cispo", dual_clip=None),
    "cispo-gspo-kl_ratio-weights": dict(FULL_OPTIONS, policy_loss="cispo", dual_clip=None, importance_level="sequence",
                                        kl_ratio_weighted=True, kl_coef=0.3),
    "kl_ratio-k2-weights": dict(FULL_OPTIONS, kl_ratio_weighted=True, kl_estimator="k2", kl_coef=0.3),
    "kl_ratio-k3-seq_mean_token_sum": dict(FULL_OPTIONS, kl_ratio_weighted=True, kl_coef=0.3,
                                           normalize="seq_mean_token_sum"),
    "kl_ratio-no_ref": dict(kl_ratio_weighted=True),  # no reference: KL = 0 still
}  # fmt: skip


def branch_inputs(case, dtype, device="cpu"):
    """Inputs of branch sample ``case`` (of BRANCH_OPTIONS or OPTION_CASES): (5, 8) tokens,
    V = 17, every branch reached (see test_ppo_loss.py), NaN and inf in every input of the masked
    tokens, which must never be read."""
    options = BRANCH_OPTIONS[case] if case in BRANCH_OPTIONS else OPTION_CASES[case]
    inputs = make_inputs((5, 8), 17, dtype=dtype, seed=1, temperature=options.get("temperature", 1.0))
    if case.endswith("no_ref"):
        del inputs["ref_logprobs"]
    if "weights" in case:  # in [0, 2), some 0
        g = torch.Generator().manual_seed(21)
        weights = 2 * torch.rand(5, 8, generator=g, dtype=torch.float64)
        inputs["token_weights"] = torch.where(weights < 0.2, 0, weights).to(dtype)
    masked = ~inputs["mask"]
    with torch.no_grad():
        inputs["logits"][masked] = math.nan
        inputs["logits"][tuple(masked.nonzero()[0].tolist())] = math.inf
        nonfinite = (("old_logprobs", -math.inf), ("advantages", math.nan), ("ref_logprobs", math.inf),
                     ("token_weights", math.nan))  # fmt: skip
        for key, bad in nonfinite:
            if key in inputs:
                inputs[key] = torch.where(masked, bad, inputs[key])
    inputs = _tensors_to(device, **inputs)
    inputs["logits"] = inputs["logits"].detach().requires_grad_()
    return dict(inputs, **options)


def _ppo_samples():
    def full(shape, vocab, dtype=torch.float32, seed=0, **options):
        def make(d):
            return dict(make_inputs(shape, vocab, dtype=dtype, device=d, seed=seed), **dict(FULL_OPTIONS, **options))

        return make

    for name, (shape, vocab) in {"V1": ((3, 8), 1), "V3": ((4, 8), 3), "V64": ((3, 9), 64),
                                 "V50257": ((2, 3), 50257), "V128256": ((2, 2), 128256),
                                 "3d_batch": ((3, 2, 8), 5), "one_sequence": ((8,), 5)}.items():  # fmt: skip
        yield Sample(name, full(shape, vocab))
    for case, dtype in itertools.product([*BRANCH_OPTIONS, *OPTION_CASES], (torch.float32, torch.float64)):
        yield Sample(f"branches-{case}-{_dt(dtype)}", lambda d, c=case, t=dtype: branch_inputs(c, t, d), dtype)
    yield Sample("bfloat16-V50257-gspo-cispo", full((3, 8), 50257, torch.bfloat16, seed=3, importance_level="sequence",
                                                    policy_loss="cispo", dual_clip=None), torch.bfloat16)  # fmt: skip
    yield Sample("bfloat16-V50257", full((3, 8), 50257, torch.bfloat16, seed=3), torch.bfloat16)
    yield Sample("float16-V50257", full((3, 8), 50257, torch.float16, seed=3), torch.float16, devices=("cpu",))

    def strided(d):  # logits with a column stride of N
        inputs = dict(make_inputs((8,), 30, device=d, seed=6), **FULL_OPTIONS)
        base = inputs["logits"].detach().t().contiguous().requires_grad_()
        return dict(inputs, logits=base.t())

    def all_masked(d):
        inputs = make_inputs((2, 3), 6, device=d)
        return dict(inputs, mask=torch.zeros_like(inputs["mask"]), **FULL_OPTIONS)

    def float64_small(d):
        return dict(make_inputs((2, 3), 4, dtype=torch.float64, device=d, seed=7), **FULL_OPTIONS)

    def opcheck_k2(d):
        inputs = make_inputs((5,), 7, device=d, seed=8)
        return dict(inputs, **dict(FULL_OPTIONS, kl_estimator="k2", kl_coef=0.1))

    def new_options(dtype, seed, **options):  # issue 17's options, for opcheck, compile, gradcheck
        def make(d):
            inputs = make_inputs((3, 5), 6, dtype=dtype, device=d, seed=seed)
            g = torch.Generator().manual_seed(seed)
            inputs["token_weights"] = torch.rand(3, 5, generator=g, dtype=torch.float64).to(dtype).to(d)
            return dict(inputs, **dict(FULL_OPTIONS, kl_ratio_weighted=True, **options))

        return make

    yield Sample("strided_logits", strided)
    yield Sample("all_masked", all_masked)
    yield Sample("float64-V4", float64_small, torch.float64)
    yield Sample("k2-one_sequence", opcheck_k2)
    yield Sample("compile-V50", full((3, 8), 50, seed=9))
    yield Sample("new_options-V6", new_options(torch.float32, 22, importance_level="sequence", policy_loss="cispo",
                                               dual_clip=None))  # fmt: skip
    # gradcheck differentiates the loss's value: the stop-gradients of the sequence level and of
    # CISPO are not its derivative (the oracle checks them); token weights and the ratio-weighted KL are.
    yield Sample("weights-kl_ratio-float64-V6", new_options(torch.float64, 23), torch.float64)
    yield Sample("gspo-one_sequence", full((8,), 5, seed=24, importance_level="sequence"))
    yield Sample("gspo-3d_batch", full((3, 2, 8), 5, seed=25, importance_level="sequence"))
    for shape in ((0,), (3, 0), (0, 4)):  # no tokens: like an all-masked batch
        yield Sample(f"empty-{'x'.join(map(str, shape))}", full(shape, 7))


def _ppo_bad_inputs():
    def good(**change):
        def make(d):
            inputs = make_inputs((2, 3), 5, device=d)
            args = dict(inputs, **change)
            return {k: v for k, v in args.items() if v is not None or k != "ref_logprobs"}

        return make

    return (
        BadInput("action_too_big", good(actions=torch.full((2, 3), 5)), ValueError, "actions", "must be in"),
        BadInput("negative_action", good(actions=-torch.ones(2, 3, dtype=torch.long)), ValueError, "actions",
                 "must be in"),
        BadInput("float_actions", good(actions=torch.zeros(2, 3)), TypeError, "actions", "must be an integer"),
        BadInput("int_logits", good(logits=torch.zeros(2, 3, 5, dtype=torch.long)), TypeError, "logits",
                 "must be a floating"),
        BadInput("V0_logits", good(logits=torch.zeros(2, 3, 0)), ValueError, "logits", r"must be \[..., V\]"),
        BadInput("actions_shape", good(actions=torch.zeros(3, 2, dtype=torch.long)), ValueError, "actions",
                 "must have shape"),
        BadInput("old_shape", good(old_logprobs=torch.zeros(2, 4)), ValueError, "old_logprobs", "must have shape"),
        BadInput("advantages_shape", good(advantages=torch.zeros(6)), ValueError, "advantages", "must have shape"),
        BadInput("int_advantages", good(advantages=torch.zeros(2, 3, dtype=torch.long)), TypeError, "advantages",
                 "must be a floating"),
        BadInput("mask_shape", good(mask=torch.ones(3, 2, dtype=torch.bool)), ValueError, "mask", "must have shape"),
        BadInput("estimator", good(kl_estimator="k4"), ValueError, "kl_estimator", "must be one of"),
        BadInput("normalize", good(normalize="mean"), ValueError, "normalize", "must be one of"),
        BadInput("temperature_0", good(temperature=0.0), ValueError, "temperature", "must be >"),
        BadInput("temperature_negative", good(temperature=-1.0), ValueError, "temperature", "must be >"),
        BadInput("dual_clip_1", good(dual_clip=1.0), ValueError, "dual_clip", "must be >"),
        BadInput("clip_low_negative", good(clip_low=-0.1), ValueError, "clip_low", "must be >="),
        BadInput("kl_without_ref", good(ref_logprobs=None, kl_coef=0.1), ValueError, "ref_logprobs",
                 "kl_coef != 0 needs ref_logprobs"),
        BadInput("max_len_0", good(normalize="constant", max_len=0), ValueError, "max_len", "must be"),
        BadInput("advantages_device", good(advantages=torch.zeros(2, 3, device="meta")), ValueError, "advantages",
                 "is on meta"),
        BadInput("ref_device", good(ref_logprobs=torch.zeros(2, 3, device="meta")), ValueError, "ref_logprobs",
                 "is on meta"),
        BadInput("validate_str", good(validate="yes"), TypeError, "validate", "must be a bool or None"),
        BadInput("importance_level", good(importance_level="seq"), ValueError, "importance_level", "must be one of"),
        BadInput("policy_loss", good(policy_loss="grpo"), ValueError, "policy_loss", "must be one of"),
        BadInput("cispo_dual_clip", good(policy_loss="cispo", dual_clip=3.0), ValueError, "dual_clip",
                 "policy_loss='ppo' only"),
        BadInput("kl_ratio_weighted_int", good(kl_ratio_weighted=1), TypeError, "kl_ratio_weighted", "must be a bool"),
        BadInput("token_weights_shape", good(token_weights=torch.ones(3, 2)), ValueError, "token_weights",
                 "must have shape"),
        BadInput("token_weights_int", good(token_weights=torch.ones(2, 3, dtype=torch.long)), TypeError,
                 "token_weights", "must be a floating"),
        BadInput("token_weights_device", good(token_weights=torch.ones(2, 3, device="meta")), ValueError,
                 "token_weights", "is on meta"),
    )  # fmt: skip


# --------------------------------------------------------------------------- token log-probs


def _masked_linear(hidden, weight, bias, mask):
    """Logits of hidden states; masked rows' hidden states are never used (documented)."""
    if mask is not None:
        hidden = torch.where(mask.bool().unsqueeze(-1), hidden, 0)
    return F.linear(hidden, weight, bias)


def token_logprobs_oracle(x, actions, weight=None, bias=None, temperature=1.0, mask=None, **_):
    logits = x if weight is None else _masked_linear(x, weight, bias, mask)
    logp, entropy = token_logprobs_loop(logits, actions, temperature, mask)
    stack = lambda xs: torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in xs])  # noqa: E731
    shape = logits.shape[:-1]
    if not actions.numel():  # no tokens: zeros, still part of the graph
        zero = logits.reshape(-1)[:0].sum()
        return zero + logits.new_zeros(shape), zero + logits.new_zeros(shape)
    return stack(logp).reshape(shape), stack(entropy).reshape(shape)


def token_logprobs_spec(x, actions, weight=None, bias=None, temperature=1.0, mask=None, **_):
    """token_logprobs_reference with the documented masking: masked rows never read, 0 out."""
    logits = x if weight is None else _masked_linear(x, weight, bias, mask)
    if mask is not None:
        logits = torch.where(mask.bool().unsqueeze(-1), logits, 0)
    logp, entropy = token_logprobs_reference(logits, actions, temperature)
    if mask is not None:
        logp, entropy = torch.where(mask.bool(), logp, 0), torch.where(mask.bool(), entropy, 0)
    return logp, entropy


def _hidden_inputs(shape, hidden_size, vocab, seed, dtype=torch.float32, bias=True, nan_masked=False):
    """Hidden states, LM head and per-token inputs (of make_inputs, on the head's logits)."""

    def make(d):
        g = torch.Generator().manual_seed(seed)
        hidden = torch.randn(*shape, hidden_size, generator=g, dtype=torch.float64).to(dtype)
        weight = (0.3 * torch.randn(vocab, hidden_size, generator=g, dtype=torch.float64)).to(dtype)
        b = torch.randn(vocab, generator=g, dtype=torch.float64).to(dtype) if bias else None
        tokens = make_inputs(shape, vocab, dtype=dtype, seed=seed + 1, logits=F.linear(hidden, weight, b))
        if nan_masked:  # never used: the same results as any other value there
            hidden[~tokens["mask"]] = math.nan
        leaf = lambda x: None if x is None else x.to(d).requires_grad_()  # noqa: E731
        args = _tensors_to(d, **{k: v for k, v in tokens.items() if k != "logits"})
        return dict(args, hidden=leaf(hidden), weight=leaf(weight), bias=leaf(b))

    return make


def _token_logprobs_samples():
    def logits(shape, vocab, dtype=torch.float32, seed=12, temperature=0.7, masked=True):
        def make(d):
            inputs = make_inputs(shape, vocab, dtype=dtype, device=d, seed=seed)
            return dict(x=inputs["logits"], actions=inputs["actions"], temperature=temperature,
                        mask=inputs["mask"] if masked else None)  # fmt: skip

        return make

    def hidden(bias, chunk_size, nan_masked=False, dtype=torch.float32, shape=(3, 4), size=8, vocab=70):
        def make(d):
            args = _hidden_inputs(shape, size, vocab, seed=13, dtype=dtype, bias=bias, nan_masked=nan_masked)(d)
            return dict(x=args["hidden"], actions=args["actions"], weight=args["weight"], bias=args["bias"],
                        mask=args["mask"] if nan_masked else None, temperature=0.7, chunk_size=chunk_size)  # fmt: skip

        return make

    yield Sample("V70-masked", logits((3, 4), 70))
    yield Sample("V70-unmasked-T1", logits((3, 4), 70, temperature=1.0, masked=False))
    yield Sample("bfloat16-V1000", logits((2, 5), 1000, torch.bfloat16), torch.bfloat16)
    yield Sample("float64-V4-T1.3", logits((2, 3), 4, torch.float64, seed=7, temperature=1.3), torch.float64)
    yield Sample("hidden-chunk5", hidden(False, 5))
    yield Sample("hidden-bias-chunk1-nan_masked", hidden(True, 1, nan_masked=True))
    yield Sample("hidden-float64-bias-V6", hidden(True, None, dtype=torch.float64, shape=(2, 3), size=5, vocab=6),
                 torch.float64)  # fmt: skip
    yield Sample("empty-0x3", logits((0, 3), 5, masked=False))


def _token_logprobs_bad_inputs():
    def good(**change):
        def make(d):
            inputs = make_inputs((2, 3), 5, device=d)
            return dict(dict(x=inputs["logits"], actions=inputs["actions"]), **change)

        return make

    def hidden(**change):
        def make(d):
            return dict(dict(x=torch.zeros(2, 3, 4, device=d), actions=torch.zeros(2, 3, dtype=torch.long, device=d),
                             weight=torch.zeros(5, 4, device=d)), **change)  # fmt: skip

        return make

    return (
        BadInput("bias_without_weight", good(bias=torch.zeros(5)), ValueError, "bias", "applies only with weight"),
        BadInput("chunk_size_without_weight", good(chunk_size=4), ValueError, "chunk_size",
                 "applies only with weight"),
        BadInput("chunk_size_negative", hidden(chunk_size=-1), ValueError, "chunk_size",
                 "must be a positive int, got -1"),
        BadInput("weight_shape", hidden(weight=torch.zeros(5, 3)), ValueError, "weight", r"must be \[V, H\]"),
        BadInput("weight_dtype", hidden(weight=torch.zeros(5, 4, dtype=torch.float64)), TypeError, "weight",
                 "must have the dtype of hidden"),
        BadInput("bias_shape", hidden(bias=torch.zeros(4)), ValueError, "bias", r"must be \[V\]"),
        BadInput("temperature_0", good(temperature=0.0), ValueError, "temperature", "must be >"),
        BadInput("action_too_big", good(actions=torch.full((2, 3), 5)), ValueError, "actions", "must be in"),
        BadInput("actions_shape", good(actions=torch.zeros(6, dtype=torch.long)), ValueError, "actions",
                 "must have shape"),
        BadInput("mask_shape", good(mask=torch.ones(3, dtype=torch.bool)), ValueError, "mask", "must have shape"),
    )  # fmt: skip


# --------------------------------------------------------------------------- the PPO loss from hidden states


def from_hidden_oracle(hidden, weight, actions, old_logprobs, advantages, bias=None, chunk_size=None, mask=None,
                       **kwargs):  # fmt: skip
    return ppo_oracle(logits=_masked_linear(hidden, weight, bias, mask), actions=actions, old_logprobs=old_logprobs,
                      advantages=advantages, mask=mask, **kwargs)  # fmt: skip


def from_hidden_spec(hidden, weight, actions, old_logprobs, advantages, bias=None, chunk_size=None, mask=None,
                     **kwargs):  # fmt: skip
    return ppo_spec(logits=_masked_linear(hidden, weight, bias, mask), actions=actions, old_logprobs=old_logprobs,
                    advantages=advantages, mask=mask, **kwargs)  # fmt: skip


def _from_hidden_samples():
    def make(shape, hidden_size, vocab, seed, chunk_size, dtype=torch.float32, bias=True, nan_masked=False,
             **options):  # fmt: skip
        def build(d):
            args = _hidden_inputs(shape, hidden_size, vocab, seed, dtype, bias, nan_masked)(d)
            if options.pop("weights", False):
                g = torch.Generator().manual_seed(seed)
                args["token_weights"] = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype).to(d)
            return dict(args, chunk_size=chunk_size, **dict(FULL_OPTIONS, **options))

        return build

    yield Sample("V300-bias-chunk3", make((3, 8), 16, 300, seed=10, chunk_size=3))
    yield Sample("V300-no_bias-chunk3", make((3, 8), 16, 300, seed=10, chunk_size=3, bias=False))
    yield Sample("V50-nan_masked-chunk5", make((3, 4), 8, 50, seed=15, chunk_size=5, nan_masked=True))
    yield Sample("float64-V6-chunk4", make((2, 3), 5, 6, seed=20, chunk_size=4, dtype=torch.float64),
                 torch.float64)
    # chunks of 3 rows split sequences of 8: each chunk needs its sequences' ratios
    yield Sample("gspo-V50-nan_masked-chunk3", make((3, 8), 8, 50, seed=16, chunk_size=3, nan_masked=True,
                                                    importance_level="sequence"))  # fmt: skip
    yield Sample("gspo-cispo-kl_ratio-weights-chunk3", make((3, 8), 8, 50, seed=17, chunk_size=3, weights=True,
                                                            importance_level="sequence", policy_loss="cispo",
                                                            dual_clip=None, kl_ratio_weighted=True))  # fmt: skip
    yield Sample("float64-weights-kl_ratio-V6-chunk4", make((2, 3), 5, 6, seed=21, chunk_size=4, dtype=torch.float64,
                                                            weights=True, kl_ratio_weighted=True), torch.float64)


def _from_hidden_bad_inputs():
    good = _changed(_hidden_inputs((2, 3), 4, 5, seed=0))

    return (
        BadInput("int_hidden", good(hidden=torch.zeros(2, 3, 4, dtype=torch.long)), TypeError, "hidden",
                 "must be a floating"),
        BadInput("weight_shape", good(weight=torch.zeros(5, 3)), ValueError, "weight", r"must be \[V, H\]"),
        BadInput("bias_dtype", good(bias=torch.zeros(5, dtype=torch.float64)), ValueError, "bias", r"must be \[V\]"),
        BadInput("chunk_size_0", good(chunk_size=0), ValueError, "chunk_size", "must be a positive int"),
        BadInput("action_too_big", good(actions=torch.full((2, 3), 5)), ValueError, "actions", "must be in"),
        BadInput("normalize", good(normalize="sum"), ValueError, "normalize", "must be one of"),
    )  # fmt: skip


# --------------------------------------------------------------------------- value loss


def _value_samples():
    def make(shape, clip=None, masked=False, dtype=torch.float32, nonfinite_masked=False):
        def build(d):
            g = torch.Generator().manual_seed(18)
            v, old, ret = (torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(3))
            mask = torch.rand(shape, generator=g) < 0.6 if masked else None
            if nonfinite_masked:
                v, old, ret = (torch.where(mask, x, math.nan) for x in (v, old, ret))
            return dict(values=v.to(d).requires_grad_(), old_values=old.to(d), returns=ret.to(d),
                        clip=clip, mask=None if mask is None else mask.to(d))  # fmt: skip

        return build

    def by_hand(d):  # clipped to old +- 0.2: 0.2 (1.0^2 wins), 2.3 (2.3^2 wins), 0.0 (|v - old| < 0.2)
        return dict(values=torch.tensor([1.0, 2.0, 0.0], device=d, requires_grad=True),
                    old_values=torch.tensor([0.0, 2.5, 0.1], device=d), returns=torch.zeros(3, device=d), clip=0.2)

    yield Sample("N7-no_clip", make((7,)))
    yield Sample("4x5-clip0.2", make((4, 5), clip=0.2))
    yield Sample("4x5-clip0-masked", make((4, 5), clip=0.0, masked=True))
    yield Sample("float64-3x4-clip0.2-nan_masked", make((3, 4), clip=0.2, masked=True, dtype=torch.float64,
                                                         nonfinite_masked=True), torch.float64)  # fmt: skip
    yield Sample("by_hand-clip0.2", by_hand)
    yield Sample("empty-0", make((0,), clip=0.2))


def _value_bad_inputs():
    def args(d):
        g = torch.Generator().manual_seed(0)
        v, old, ret = (torch.randn(5, generator=g).to(d) for _ in range(3))
        return dict(values=v, old_values=old, returns=ret)

    good = _changed(args)

    return (
        # [N, 1] against [N] used to broadcast to [N, N] and answer a wrong number.
        BadInput("values_column", good(values=torch.zeros(5, 1)), ValueError, "old_values",
                 r"must have the shape of values \(5, 1\)"),
        BadInput("returns_column", good(returns=torch.zeros(5, 1)), ValueError, "returns",
                 r"must have the shape of values \(5,\), got \(5, 1\)"),
        BadInput("mask_shape", good(mask=torch.ones(5, 1, dtype=torch.bool)), ValueError, "mask",
                 "must have the shape of values"),
        BadInput("int_values", good(values=torch.zeros(5, dtype=torch.long)), TypeError, "values",
                 "must be a floating"),
        BadInput("int_old_values", good(old_values=torch.zeros(5, dtype=torch.int32)), TypeError, "old_values",
                 "must be a floating"),
        BadInput("list_returns", good(returns=[0.0] * 5), TypeError, "returns", "must be a torch.Tensor"),
        BadInput("returns_device", good(returns=torch.zeros(5, device="meta")), ValueError, "returns", "is on meta"),
        BadInput("mask_device", good(mask=torch.ones(5, dtype=torch.bool, device="meta")), ValueError, "mask",
                 "is on meta"),
        BadInput("clip_negative", good(clip=-0.1), ValueError, "clip", "must be >= 0"),
    )  # fmt: skip


# --------------------------------------------------------------------------- Gaussian-policy PPO loss


def gaussian_oracle(**kwargs):
    loss, stats, _ = gaussian_ppo_loss_loop(**kwargs)
    return loss, stats


def _gaussian_inputs(n=4, d=2, seed=18, per_token_std=False, dtype=torch.float32, **options):
    def make(device):
        g = torch.Generator().manual_seed(seed)
        randn = lambda *shape: torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
        mean, log_std = randn(n, d), 0.3 * (randn(n, d) if per_token_std else randn(d))
        args = dict(mean=mean, log_std=log_std, actions=randn(n, d), old_logprobs=randn(n) - 2, advantages=randn(n))
        if "ref" in options:
            args["ref_logprobs"] = randn(n) - 2
        if "mask" in options:
            args["mask"] = torch.rand(n, generator=g) < 0.6
        args = _tensors_to(device, **args)
        args["mean"].requires_grad_()
        args["log_std"].requires_grad_()
        return dict(args, **{k: v for k, v in options.items() if k not in ("ref", "mask")})

    return make


def _gaussian_samples():
    yield Sample("N4_D2", _gaussian_inputs())
    yield Sample("N6_D3-per_token_std-masked", _gaussian_inputs(6, 3, seed=19, per_token_std=True, mask=True,
                                                                clip_low=0.1, dual_clip=2.0))  # fmt: skip
    for estimator in KL_ESTIMATORS:  # kl_coef with ref_logprobs adds kl_coef * KL per token (once ignored)
        yield Sample(f"kl_{estimator}", _gaussian_inputs(5, 2, seed=20, ref=True, mask=True, kl_coef=0.5,
                                                         kl_estimator=estimator, entropy_coef=0.01))  # fmt: skip
    yield Sample("float64-N5_D2-masked-kl", _gaussian_inputs(5, 2, seed=21, dtype=torch.float64, ref=True, mask=True,
                                                             kl_coef=0.2, dual_clip=3.0), torch.float64)  # fmt: skip
    yield Sample("sequence-cispo-kl_ratio", _gaussian_inputs(5, 2, seed=22, ref=True, mask=True, kl_coef=0.5,
                                                             importance_level="sequence", policy_loss="cispo",
                                                             kl_ratio_weighted=True))  # fmt: skip


def _gaussian_bad_inputs():
    good = _changed(_gaussian_inputs())

    return (
        BadInput("int_mean", good(mean=torch.zeros(4, 2, dtype=torch.long)), TypeError, "mean", "must be a floating"),
        BadInput("D0_mean", good(mean=torch.zeros(4, 0)), ValueError, "mean", "must be"),
        BadInput("log_std_shape", good(log_std=torch.zeros(3)), ValueError, "log_std",
                 "must broadcast to the shape of mean"),
        BadInput("log_std_bigger", good(log_std=torch.zeros(2, 4, 2)), ValueError, "log_std",
                 "must broadcast to the shape of mean"),
        BadInput("actions_shape", good(actions=torch.zeros(4, 1)), ValueError, "actions",
                 "must have the shape of mean"),
        BadInput("int_actions", good(actions=torch.zeros(4, 2, dtype=torch.long)), TypeError, "actions",
                 "must be a floating"),
        BadInput("old_shape", good(old_logprobs=torch.zeros(4, 1)), ValueError, "old_logprobs",
                 r"must have shape \(4,\)"),
        BadInput("advantages_shape", good(advantages=torch.zeros(4, 2)), ValueError, "advantages", "must have shape"),
        BadInput("advantages_device", good(advantages=torch.zeros(4, device="meta")), ValueError, "advantages",
                 "is on meta"),
        BadInput("mask_shape", good(mask=torch.ones(4, 1, dtype=torch.bool)), ValueError, "mask", "must have shape"),
        BadInput("kl_without_ref", good(kl_coef=0.1), ValueError, "ref_logprobs", "kl_coef != 0 needs ref_logprobs"),
        BadInput("ref_shape", good(ref_logprobs=torch.zeros(5), kl_coef=0.1), ValueError, "ref_logprobs",
                 "must have shape"),
        BadInput("temperature", good(temperature=2.0), ValueError, "temperature", "does not apply"),
    )  # fmt: skip


# --------------------------------------------------------------------------- the registry

OPS = (
    OpInfo("gae", gae, tuple(_gae_samples()), _gae_bad_inputs(), oracle=gae_oracle, oracle_tol=lambda _: BITWISE,
           reference=gae_spec, opcheck=("T33_B17-mixed-float32", "masked-float64", "batch_first-time_dim1"),
           compile=("T33_B17-mixed-float32",)),
    OpInfo("discounted_returns", discounted_returns, tuple(_returns_samples()), _returns_bad_inputs(),
           oracle=returns_oracle, oracle_tol=lambda _: BITWISE, reference=returns_spec,
           opcheck=("masked-float32", "strided-gamma1", "T5_B1-float64"), compile=("T33_B17-float32",)),
    OpInfo("rollout_next_values", rollout_next_values, tuple(_next_values_samples()), _next_values_bad_inputs(),
           oracle=next_values_oracle, oracle_tol=lambda _: BITWISE, compile=("T6_B2x3-final",)),
    OpInfo("ppo_loss", ppo_loss, tuple(_ppo_samples()), _ppo_bad_inputs(), oracle=ppo_oracle,
           oracle_tol=ppo_tolerances, reference=ppo_spec, reference_tol=ppo_reference_tolerances,
           native_grad_args={"ppo_loss": ("logits",), "token_logprobs": ("logits",)},
           opcheck=("k2-one_sequence", "float64-V4", "new_options-V6"), compile=("compile-V50", "new_options-V6"),
           gradcheck=("float64-V4", "weights-kl_ratio-float64-V6")),
    OpInfo("ppo_loss_from_hidden", ppo_loss_from_hidden, tuple(_from_hidden_samples()), _from_hidden_bad_inputs(),
           oracle=from_hidden_oracle, oracle_tol=ppo_tolerances, reference=from_hidden_spec,
           reference_tol=ppo_reference_tolerances, native_grad_args={"ppo_loss": ("logits",)},
           opcheck=("V50-nan_masked-chunk5",), compile=("V300-bias-chunk3",),
           gradcheck=("float64-V6-chunk4", "float64-weights-kl_ratio-V6-chunk4"),
           known_failures={"compile-V300-bias-chunk3": "_ChunkedLinear.backward calls torch.autograd.grad, which "
                           "dynamo does not trace (trace_autograd_ops=False): a graph break under fullgraph=True"}),
    OpInfo("token_logprobs", token_logprobs, tuple(_token_logprobs_samples()), _token_logprobs_bad_inputs(),
           oracle=token_logprobs_oracle, oracle_tol=ppo_tolerances, reference=token_logprobs_spec,
           reference_tol=ppo_reference_tolerances, native_grad_args={"token_logprobs": ("logits",)},
           opcheck=("V70-masked", "hidden-chunk5"), compile=("V70-masked", "hidden-chunk5"),
           known_failures={"compile-hidden-chunk5": "as ppo_loss_from_hidden: _ChunkedLinear does not trace"},
           gradcheck=("float64-V4-T1.3", "hidden-float64-bias-V6")),
    OpInfo("value_loss", value_loss, tuple(_value_samples()), _value_bad_inputs(), oracle=value_loss_loop,
           oracle_tol=lambda dtype: Tol(1e-12, 1e-12, 1e-12, 1e-12) if dtype == torch.float64 else Tol(
               1e-5, 1e-6, 1e-5, 1e-6), compile=("4x5-clip0.2",), gradcheck=("float64-3x4-clip0.2-nan_masked",)),
    OpInfo("gaussian_ppo_loss", gaussian_ppo_loss, tuple(_gaussian_samples()), _gaussian_bad_inputs(),
           oracle=gaussian_oracle, oracle_tol=lambda _: Tol(1e-5, 1e-6, 1e-4, 1e-6), compile=("kl_k3",),
           gradcheck=("float64-N5_D2-masked-kl",)),
)  # fmt: skip

OPS_BY_NAME = {op.name: op for op in OPS}
