"""`hf-select score --engine ray | --shard i/N | --scores-only` and `hf-select merge`.

Sharded scoring writes score sidecars into a folder: the output itself with `--scores-only` or `--shard`,
else `OUTPUT.shards` beside it, merged into the scored pool at `OUTPUT` (as a plain `score` writes it)
once every shard is there, then removed. A re-run with the same command scores only the missing shards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .layout import ShardSpec
from .merge import SIDECAR_PATTERN, read_scores, sidecar_files

if TYPE_CHECKING:
    from ..scorers import Scorer

_RAY_ONLY = ("address", "actors", "gpus_per_actor")
ROWS_PER_PROCESS = 5000
"""Below this many rows per worker, starting a worker process costs more than it saves."""


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """The sharding options of `hf-select score`."""
    group = p.add_argument_group("sharded scoring (see README, 'More than one machine')")
    group.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local: this machine; ray: scorer actors on a Ray cluster, one shard per call",
    )  # fmt: skip
    group.add_argument("--address", help="Ray cluster to join (`auto`: this node's); default: start a local one")
    group.add_argument("--shards", type=int, help="cut the pool into N shards (default: 4 per Ray actor; num-proc)")
    group.add_argument(
        "--shard", type=ShardSpec.parse, metavar="I/N",
        help="score shard I of N alone (0-based) into sidecars in the output folder, without Ray",
    )  # fmt: skip
    group.add_argument(
        "--scores-only", action="store_true",
        help="write score sidecars (row index, scores, errors) to the output folder instead of the whole pool",
    )  # fmt: skip
    group.add_argument("--actors", type=int, help="Ray: scorer actors (default: one per GPU, else per CPU)")
    group.add_argument(
        "--gpus-per-actor", type=float,
        help="Ray: GPUs per actor (default: 1 for a local model scorer on a cluster with GPUs, else 0)",
    )  # fmt: skip


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sidecars", help="folder of score sidecars written by `hf-select score --shard/--scores-only`")
    p.add_argument("--pool", help="the pool they scored: the output is the scored pool (default: the scores only)")
    p.add_argument("--split", help="split of --pool")
    p.add_argument("--data-revision", help="Hub revision of --pool")
    p.add_argument("--data-config", help="Hub config of --pool")
    p.add_argument("--limit", type=int, help="the --limit the scoring run used")
    p.add_argument("-o", "--output", required=True, help="output folder (never an input)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")


def is_sharded(args: argparse.Namespace) -> bool:
    """Whether `hf-select score` was asked for sharded scoring; options that need it are refused otherwise."""
    sharded = args.engine == "ray" or args.shard is not None or args.scores_only
    given = [f"--{name.replace('_', '-')}" for name in _RAY_ONLY if getattr(args, name) is not None]
    if given and args.engine != "ray":
        raise InputError(f"{', '.join(given)} only apply with --engine ray")
    if args.shard is not None and args.engine == "ray":
        raise InputError("--shard i/N scores one shard without Ray: leave out --engine ray (Ray runs every shard)")
    if args.shard is not None and args.shards is not None and args.shards != args.shard.count:
        raise InputError(f"--shard {args.shard} says {args.shard.count} shards, but --shards is {args.shards}")
    if sharded and args.checkpoint_every is not None:
        raise InputError("--checkpoint-every does not apply to sharded scoring: each finished shard is a checkpoint")
    if not sharded and args.shards is not None:
        raise InputError("--shards applies to sharded scoring: add --engine ray, --shard i/N or --scores-only")
    return sharded


def default_num_proc(scorer: Scorer, n_rows: int) -> int | None:
    """Worker processes when `--num-proc` is not given: every core for a tokenizer-only scorer (at most one
    per `ROWS_PER_PROCESS` rows), one process for a model scorer (each loads the model: give one per GPU)."""
    if scorer.needs_device:
        return None
    n = min(os.cpu_count() or 1, max(1, n_rows // ROWS_PER_PROCESS))
    return n if n > 1 else None


def sidecar_folder(path: Path, inputs: list[str], *, overwrite: bool, scorer: Scorer, args: argparse.Namespace) -> Path:
    """A folder for sidecars: never an input; an existing one may hold only an earlier run's sidecars (a
    re-run resumes it). With `overwrite`, sidecars of another scorer configuration, shard count or batch size
    are deleted (with `--shard`, only that shard's); this configuration's are kept: they hold its scores."""
    from ..pool import prepare_output
    from .layout import read_sidecar_meta

    prepare_output(path, inputs, overwrite=True)  # the input checks
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path} is a file: sidecars need a folder")
        names = [p.name for p in path.iterdir() if not p.name.startswith(".scores-")]  # a killed run's temp files
        foreign = [name for name in names if not (SIDECAR_PATTERN.fullmatch(name) or name == "pool")]
        if foreign:
            raise InputError(f"{path} holds other files ({', '.join(sorted(foreign)[:3])}): choose another folder")
        if overwrite:
            shard, count = args.shard, (args.shard.count if args.shard is not None else args.shards)
            for p in sidecar_files(path):
                meta = read_sidecar_meta(p)
                if shard is not None and meta.get("shard") != shard.index:
                    continue
                same = meta.get("fingerprint") == scorer.fingerprint() and meta.get("batch_size") == args.batch_size
                if not same or (count is not None and meta.get("n_shards") != count):
                    p.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cmd_score_sharded(args: argparse.Namespace, command: str, scorer: Scorer) -> int:
    from ..commands import report_scored
    from ..pool import load_pool, prepare_output, save_scored, staged_output
    from .local import score_locally
    from .merge import merge_scores
    from .ray_engine import score_with_ray

    scores_only = args.scores_only or args.shard is not None
    out = Path(args.output).expanduser().resolve()
    if scores_only:
        folder = sidecar_folder(out, [args.input], overwrite=args.overwrite, scorer=scorer, args=args)
    else:
        prepare_output(out, [args.input], overwrite=args.overwrite)  # fail before the scoring
        shards_folder = out.with_name(f"{out.name}.shards")
        folder = sidecar_folder(shards_folder, [args.input], overwrite=args.overwrite, scorer=scorer, args=args)
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
    )
    scorer.format_spec(pool.column_names)  # fail now, naming the columns

    def progress(report: dict[str, Any]) -> None:
        if not args.quiet:
            (start, stop), seconds = report["rows"], report["seconds"]
            print(f"shard {report['shard']}: rows {start:,}-{stop - 1:,} scored in {seconds:.1f} s", flush=True)

    options = dict(source=source, batch_size=args.batch_size, on_shard=progress)
    if args.engine == "ray":
        reports = score_with_ray(
            scorer, pool, folder, n_shards=args.shards, address=args.address, actors=args.actors,
            gpus_per_actor=args.gpus_per_actor, **options,
        )  # fmt: skip
    else:
        num_proc = args.num_proc if args.num_proc is not None else default_num_proc(scorer, len(pool))
        shards = [args.shard.index] if args.shard is not None else None
        n_shards = args.shard.count if args.shard is not None else args.shards
        reports = score_locally(scorer, pool, folder, n_shards=n_shards, shards=shards, num_proc=num_proc, **options)
    ran = [r["shard"] for r in reports if not r["skipped"]]
    skipped = [r["shard"] for r in reports if r["skipped"]]
    print(f"Scored shards {ran or 'none'}" + (f"; already done: {skipped}" if skipped else ""))
    if scores_only:
        n_shards = len(reports) if args.shard is None else args.shard.count
        print(f"Wrote score sidecars to {folder} ({len(sidecar_files(folder))} of {n_shards} shards there)")
        return 0
    scored = merge_scores(pool, folder)
    entry = {**scorer.describe(), "command": command}
    with staged_output(out, [args.input], overwrite=args.overwrite) as staging:
        save_scored(scored, staging, source=source, scorers=[*scorers, entry])
    shutil.rmtree(folder, ignore_errors=True)  # the output now holds every row
    return report_scored(scored, scorer.error_column, out)


def cmd_merge(args: argparse.Namespace, command: str) -> int:
    """`hf-select merge SIDECARS [--pool POOL] -o OUT`: the scored pool (with `--pool`), or the scores alone
    in pool order, saved as `hf-select score` saves (with `hf_select.json`)."""
    from datasets import Dataset

    from ..commands import report_scored
    from ..pool import load_pool, save_scored, staged_output
    from .layout import INDEX_COLUMN
    from .merge import merge_scores

    scores = read_scores(args.sidecars)  # checked before the pool is read
    entry = {**scores.meta["scorer"], "command": command}
    inputs = [args.sidecars] + ([args.pool] if args.pool else [])
    if args.pool:
        pool, source, scorers = load_pool(
            args.pool, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
        )
        _check_pool(source, scores.meta["pool"], args.pool)
        merged = merge_scores(pool, args.sidecars)
    else:
        merged = Dataset(scores.table.drop_columns([INDEX_COLUMN]))
        source, scorers = {**scores.meta["pool"], "scores_only": True}, []
    with staged_output(args.output, inputs, overwrite=args.overwrite) as staging:
        save_scored(merged, staging, source=source, scorers=[*scorers, entry])
    return report_scored(merged, scores.meta["error_column"], Path(args.output))


def _check_pool(source: dict[str, Any], scored: dict[str, Any], given: str) -> None:
    """The pool given to `merge` must be the one scored: same rows and, where both say, same file digest."""
    from .shard_scoring import pool_key

    mine = pool_key(source)
    for key in ("num_rows", "sha256", "revision", "limit"):
        if key in scored and scored.get(key) != mine.get(key):
            raise InputError(
                f"--pool {given} is not the pool the sidecars scored ({key}: {mine.get(key)!r}, sidecars: "
                f"{scored.get(key)!r}; they scored {json.dumps(scored.get('dataset'))})"
            )


__all__ = ["add_merge_arguments", "add_score_arguments", "cmd_merge", "cmd_score_sharded", "default_num_proc"]
