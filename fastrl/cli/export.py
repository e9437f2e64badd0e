"""``fastrl export RUN --out FILE``: a checkpoint's policy as a torch.export program."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint's policy as a torch.export program (runs without fastrl)")
    p.add_argument("checkpoint", help="checkpoint.pt (or its run directory)")
    p.add_argument("--out", required=True, help="the program's file, e.g. policy.pt2")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastrl.policy import export_policy, load_policy

    policy = load_policy(args.checkpoint)
    path = export_policy(policy, args.out)
    kind = "actions" if policy.kind == "gaussian" else "action indices"
    print(f"fastrl export: wrote {path}: {policy.algo} on {policy.env_id}, observations [N, "
          f"{', '.join(map(str, policy.obs_shape))}] -> greedy {kind}; load it with "
          f"torch.export.load({str(path)!r}).module()")
    return 0
