"""k-center selecting 10,000 of 100,000 random 384-d vectors (float32, torch CPU): wall time and peak memory.

Runs, in the same process on the same matrix:
  - `kcenter_indices` greedy (the shipped path: matvec bounds + exact `cdist` on the rows that may move),
    from one random row, all `--picks` picks;
  - the plain exact greedy (every row's `cdist` to every new center) on the first `--plain-picks` picks,
    which must give the same picks, and the plain float32 matvec (`||x||^2 - 2x.c + ||c||^2`, not exact)
    per pick, for the cost of each step;
  - one-shot (the study's DiverseEvol step): `--one-shot-init` random rows, then the farthest
    `--picks - init` at once.
Peak memory: the process's peak resident set (VmHWM, reset before each run through /proc/self/clear_refs)
minus its resident set before the run. k-means has a place here and will be added separately.

    python benchmarks/bench_kcenter.py [--rows 100000] [--dim 384] [--picks 10000] [--threads N] [--name kcenter]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from common import measure, write_results

from hf_select.select.kcenter import kcenter_indices

NOMM = "donot_use_mm_for_euclid_dist"


def plain_exact(X: torch.Tensor, start: int, picks: int) -> list[int]:
    dmin = torch.full((len(X),), float("inf"))
    s, out = start, []
    for _ in range(picks):
        dmin[s] = -1
        dmin = torch.minimum(dmin, torch.cdist(X, X[s : s + 1], compute_mode=NOMM)[:, 0])
        dmin[s] = -1
        for p in out:
            dmin[p] = -1
        s = int(torch.argmax(dmin))
        out.append(s)
    return out


def plain_matvec(X: torch.Tensor, start: int, picks: int) -> list[int]:
    sq = (X * X).sum(1)
    dmin = torch.full((len(X),), float("inf"))
    s, out = start, []
    for _ in range(picks):
        dmin[s] = -1
        d2 = sq - 2 * torch.mv(X, X[s]) + sq[s]
        dmin = torch.where(dmin < 0, dmin, torch.minimum(dmin, d2))
        s = int(torch.argmax(dmin))
        out.append(s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--picks", type=int, default=10_000)
    parser.add_argument("--plain-picks", type=int, default=200)
    parser.add_argument("--one-shot-init", type=int, default=1_000)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--name", default="kcenter", help="results file name (benchmarks/results/NAME.json, .md)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]

    X = torch.randn(args.rows, args.dim, generator=torch.Generator().manual_seed(0))  # float32, 154 MB at 100K
    start = int(np.random.default_rng(0).integers(args.rows))
    matrix_mb = X.numel() * 4 / 2**20
    print(f"{args.rows:,} x {args.dim} float32 ({matrix_mb:.0f} MiB), {torch.get_num_threads()} torch threads, "
          f"load {load_before}")  # fmt: skip

    picks, greedy_s, greedy_peak = measure(lambda: kcenter_indices(X, args.picks, selected=[start], device="cpu"))
    print(f"greedy, {args.picks:,} picks: {greedy_s:.1f}s ({greedy_s / args.picks * 1e3:.2f} ms/pick), "
          f"peak +{(greedy_peak or 0) / 2**20:.0f} MiB")  # fmt: skip

    plain, plain_s, _ = measure(lambda: plain_exact(X, start, args.plain_picks))
    identical = plain == picks[: args.plain_picks].tolist()
    print(f"plain exact cdist greedy, {args.plain_picks} picks: {plain_s:.1f}s "
          f"({plain_s / args.plain_picks * 1e3:.2f} ms/pick); identical picks: {identical}")  # fmt: skip
    mv, mv_s, _ = measure(lambda: plain_matvec(X, start, args.plain_picks))
    mv_same = mv == picks[: args.plain_picks].tolist()
    print(f"plain float32 matvec greedy (inexact), {args.plain_picks} picks: {mv_s:.1f}s "
          f"({mv_s / args.plain_picks * 1e3:.2f} ms/pick); same picks: {mv_same}")  # fmt: skip

    init = np.random.default_rng(1).choice(args.rows, size=args.one_shot_init, replace=False)
    _, one_shot_s, one_shot_peak = measure(
        lambda: kcenter_indices(X, args.picks - args.one_shot_init, selected=init, mode="one-shot", device="cpu")
    )
    print(f"one-shot, {args.one_shot_init:,} init + {args.picks - args.one_shot_init:,}: {one_shot_s:.1f}s, "
          f"peak +{(one_shot_peak or 0) / 2**20:.0f} MiB")  # fmt: skip
    load_after = [round(x, 2) for x in os.getloadavg()]

    mib = lambda b: round(b / 2**20, 1) if b is not None else None  # noqa: E731
    figures = {
        "rows": args.rows,
        "dim": args.dim,
        "picks": args.picks,
        "torch_threads": torch.get_num_threads(),
        "matrix_mib": round(matrix_mb, 1),
        "greedy": {"seconds": round(greedy_s, 1), "ms_per_pick": round(greedy_s / args.picks * 1e3, 3),
                   "peak_mib_above_start": mib(greedy_peak)},
        "plain_exact_cdist": {"picks": args.plain_picks, "seconds": round(plain_s, 2),
                              "ms_per_pick": round(plain_s / args.plain_picks * 1e3, 3),
                              "identical_picks": identical},
        "plain_matvec_inexact": {"picks": args.plain_picks, "seconds": round(mv_s, 2),
                                 "ms_per_pick": round(mv_s / args.plain_picks * 1e3, 3), "same_picks": mv_same},
        "one_shot": {"init": args.one_shot_init, "picks": args.picks - args.one_shot_init,
                     "seconds": round(one_shot_s, 1), "peak_mib_above_start": mib(one_shot_peak)},
        "kmeans": None,  # added separately
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }  # fmt: skip
    per = lambda s, n: s / n * 1e3  # noqa: E731
    md = f"""k-center over {args.rows:,} random {args.dim}-d float32 vectors ({matrix_mb:.0f} MiB), torch CPU, \
{torch.get_num_threads()} thread{"s" if torch.get_num_threads() != 1 else ""}.

| run | picks | seconds | ms / pick | peak memory above start |
|---|---:|---:|---:|---:|
| greedy (`kcenter_indices`), from 1 random row | {args.picks:,} | {greedy_s:,.1f} | \
{per(greedy_s, args.picks):.2f} | {mib(greedy_peak)} MiB |
| plain exact greedy (`cdist` of every row to each new center) | {args.plain_picks} | {plain_s:.1f} | \
{per(plain_s, args.plain_picks):.2f} | |
| plain float32 matvec greedy (not exact) | {args.plain_picks} | {mv_s:.1f} | {per(mv_s, args.plain_picks):.2f} | |
| one-shot, {args.one_shot_init:,} random init rows | {args.picks - args.one_shot_init:,} | {one_shot_s:.1f} | | \
{mib(one_shot_peak)} MiB |

The shipped greedy gives the same first {args.plain_picks} picks as the plain exact greedy: **{identical}** \
(the plain matvec greedy: {mv_same}).

k-means: to be added.

Load average before/after: {load_before} / {load_after} (other jobs share this machine: timings are upper bounds).
"""
    path = write_results(args.name, figures, md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
