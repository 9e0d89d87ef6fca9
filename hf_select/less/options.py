"""`hf-select less-warmup`: its options (the warm-up's generated from `LESSWarmup`'s fields) and the command.

Example:
    $ hf-select less-warmup pool.jsonl -o warmup --model embedded:smollm2 --lora-r 8 --epochs 2 --dry-run
    $ hf-select less-warmup pool.jsonl -o warmup --model embedded:smollm2 --lora-r 8 --epochs 2
"""

from __future__ import annotations

import argparse

from ..options import add_options, build, field_options
from .warmup_lora import LESSWarmup


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="the pool: Hub dataset id, save_to_disk folder, selection folder, or json/jsonl/parquet/csv file"
    )
    p.add_argument("--split", help="split of a Hub dataset, DatasetDict folder or folder of split-named files")
    p.add_argument("--data-revision", help="Hub dataset revision")
    p.add_argument("--data-config", help="Hub dataset config name")
    p.add_argument("--limit", type=int, help="use only the first N rows of the input (recorded in the source)")
    p.add_argument(
        "-o", "--output", required=True,
        help="the warm-up folder; a re-run with the same settings resumes after its last complete epoch",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="delete the folder's warm-up and start again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--dry-run", action="store_true", help="count the sample's tokens and estimate GPU hours; train nothing"
    )
    p.add_argument("--gpu-tflops", type=float, default=400.0, help="sustained TFLOP/s assumed by --dry-run")
    add_options(p.add_argument_group("warm-up (LESSWarmup's fields)"), field_options(LESSWarmup))


def run(args: argparse.Namespace) -> int:
    from ..pool import load_pool
    from .checkpoints import load_checkpoints
    from .estimate import format_warmup_estimate, warmup_estimate

    settings = build(LESSWarmup, {o.name: getattr(args, o.name) for o in field_options(LESSWarmup)}, what="less-warmup")
    pool = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
    ).dataset
    if args.dry_run:
        print(format_warmup_estimate(warmup_estimate(settings, pool, gpu_tflops=args.gpu_tflops)))
        return 0
    record = settings.run(pool, args.output, overwrite=args.overwrite, progress=not args.quiet)
    trained = settings.trained_epochs
    done = "epochs " + ", ".join(map(str, trained)) if trained else "nothing (every epoch was already complete)"
    print(
        f"LESS warm-up of {record.model}: {record.training['rows']:,} rows (seed {record.sample_seed} sample of "
        f"{len(record.sample_indices):,}), trained {done}"
    )
    for checkpoint in load_checkpoints(args.output):
        print(f"  {checkpoint.path}: step {checkpoint.step}, mean learning rate {checkpoint.learning_rate:.4g}")
    print(f"Next: hf-select score POOL --method less --warmup {args.output} -o scored")
    return 0
