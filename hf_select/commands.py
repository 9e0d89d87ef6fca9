"""The `hf-select` subcommands (`cli.py` parses the command line and calls these).

Each command checks every option before it reads any data, and writes its output only once it is complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import select
from .distributed.layout import INDEX_COLUMN
from .errors import InputError
from .options import Option, add_options, build, field_options, given
from .select import Budget

if TYPE_CHECKING:
    from datasets import Dataset

    from .distributed.sharded_scores import ShardedScores
    from .scorers import Scorer


def build_scorer(args: argparse.Namespace) -> Scorer:
    """The scorer named by `--method`, configured from the flags that are its dataclass fields."""
    from .scorers.cli_options import scorer_from_args

    return scorer_from_args(args)


def cmd_score(args: argparse.Namespace, command: str) -> int:
    from datasets.utils import disable_progress_bars, enable_progress_bars

    from .conversation import detect_format
    from .distributed.commands import cmd_score_sharded, default_num_proc, is_sharded
    from .estimate import estimate, format_estimate
    from .pool import load_pool, prepare_output, save_scored, staged_output

    scorer = build_scorer(args)
    if is_sharded(args) and not args.dry_run:
        return cmd_score_sharded(args, command, scorer)
    if not args.dry_run:
        out = prepare_output(args.output, [args.input], overwrite=args.overwrite)  # fail before the scoring
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
    )
    detect_format(pool.column_names, scorer.format, scorer.columns)  # fail now, naming the columns
    if args.num_proc is None:
        args.num_proc = default_num_proc(scorer, len(pool))
    if args.dry_run:
        print(format_estimate(estimate(scorer, pool, probe_rows=args.probe_rows, num_proc=args.num_proc)))
        return 0
    checkpoints = Path(f"{out}.checkpoints")
    if args.quiet:
        disable_progress_bars()
    try:
        scored = scorer.map(
            pool, num_proc=args.num_proc, batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
            checkpoint_dir=str(checkpoints), progress=not args.quiet,
        )  # fmt: skip
    finally:
        if args.quiet:
            enable_progress_bars()
    entry = {**scorer.describe(), "command": command}
    with staged_output(out, [args.input], overwrite=args.overwrite) as folder:
        save_scored(scored, folder, source=source, scorers=[*scorers, entry])
    shutil.rmtree(checkpoints, ignore_errors=True)  # the output now holds every row
    return report_scored(scored, scorer.error_column, out)


def report_scored(scored: Any, error_column: str, out: Path) -> int:
    """Print the scored pool's summary, how many rows failed, and where it was written."""
    from .summary import describe, table

    errors = sum(1 for e in scored[error_column] if e)
    print(table({"scored": describe(scored)}))
    if errors:
        print(f"\n{errors:,} rows could not be scored (reason in '{error_column}').")
    print(f"Wrote {out}")
    return 0


def cmd_cluster(args: argparse.Namespace, command: str) -> int:
    """k-means (`cluster.KMeans`) of an embedding column, saved like `score` saves: the dataset with
    `cluster` and `cluster_distance` added, and `hf_select.json` with the clustering's `describe()` (plus
    the command) appended to the scorers, so that `select` records and cards carry it."""
    from .cluster import KMeans
    from .pool import load_pool, prepare_output, save_scored, staged_output

    km = KMeans(
        n_clusters=args.n_clusters, column=args.column, seed=args.seed, niter=args.niter, spherical=args.spherical,
        init=args.init, max_points_per_centroid=args.max_points_per_centroid,
    )  # fmt: skip
    out = prepare_output(args.output, [args.input], overwrite=args.overwrite)
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
    )
    clustered = km.fit(pool)
    replaced = (km.output_column, km.distance_column)
    kept = [  # an earlier clustering whose columns were just replaced no longer made any column here
        s for s in scorers
        if not (s.get("method") == KMeans.method and (s.get("config") or {}).get("output_column") in replaced)
    ]  # fmt: skip
    with staged_output(out, [args.input], overwrite=args.overwrite) as folder:
        save_scored(clustered, folder, source=source, scorers=[*kept, {**km.describe(), "command": command}])
    stats, sizes = km.stats, km.stats["cluster_sizes"]
    objective = stats["objective"][-1] if stats.get("objective") else None
    print(
        f"{stats['rows_clustered']:,} of {len(clustered):,} rows in {args.n_clusters:,} clusters "
        f"(sizes {sizes['min']:,} to {sizes['max']:,}, {sizes['empty']:,} empty)"
        + (f"; objective {objective:,.6g} after {stats['iterations']} iterations" if objective is not None else "")
    )
    if stats["rows_unclustered"]:
        n = stats["rows_unclustered"]
        rows = f"{n:,} row{'s' if n != 1 else ''}"
        print(f"{rows} without a usable {args.column!r} vector: cluster is null (never selected).")
    print(f"Wrote {out}")
    return 0


def selector_options() -> list[Option]:
    """Every option of every selector the CLI offers (`select` parses them all, then keeps the method's)."""
    return [option for cls in select.SELECTORS.values() if cls.cli for option in field_options(cls)]


def method_help(method: str) -> str:
    """`hf-select select --method M --help`: the method's sentence and each of its options."""
    cls = select.SELECTORS[method]
    parser = argparse.ArgumentParser(
        prog=f"hf-select select INPUT --method {method}", description=summary(cls), add_help=False
    )
    add_options(parser.add_argument_group(f"{method} options"), field_options(cls))
    return parser.format_help()


def select_help(argv: Sequence[str], build_parser: Callable[[], argparse.ArgumentParser]) -> str:
    """The help `hf-select select ... --help` asks for: that method's with `--method M`, else select's."""
    methods = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--method"]
    methods += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--method=")]
    if methods and methods[-1] in select.SELECTORS:
        return method_help(methods[-1])
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["select"].format_help()


def build_selector(args: argparse.Namespace) -> select.Selector:
    """The selector named by `--method`, from the options given: an option of another method is refused,
    naming the ones this method takes."""
    if not args.method:
        raise InputError("select needs --method (see `hf-select methods`)")
    cls = select.SELECTORS[args.method]
    own = field_options(cls)
    values, foreign = given(args, own)
    if foreign:
        valid = ", ".join(" / ".join(option.flags) for option in own)
        raise InputError(f"--method {args.method} does not take {', '.join(foreign)}; it takes {valid}")
    return build(cls, values)


def cmd_select(args: argparse.Namespace, command: str) -> int:
    from .card import fetch_source_card_data
    from .pool import load_pool, prepare_output, staged_output
    from .save import save_selection
    from .summary import describe, table

    selector = build_selector(args)  # every option checked before anything is read
    if not args.sharded and (args.pool or args.ray):
        raise InputError(f"{'--pool' if args.pool else '--ray'} goes with --sharded (INPUT a folder of score sidecars)")
    if args.sharded and (args.with_scores or args.limit):
        raise InputError(f"--sharded does not take {'--with-scores' if args.with_scores else '--limit'}")
    inputs = [args.input, *([args.pool] if args.pool else [])]
    out = prepare_output(args.output, inputs, overwrite=args.overwrite)
    controls_out = Path(f"{out}-controls")
    if args.controls:
        prepare_output(controls_out, inputs, overwrite=args.overwrite)
    loaded = args.pool if args.sharded else args.input
    pool = None
    if loaded is not None:
        pool = load_pool(
            loaded, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
        ).dataset
    fit: Callable[[select.Selector], select.Selection] = lambda s: s.fit(pool)  # noqa: E731
    if args.sharded:
        from .distributed.sharded_scores import ShardedScores

        scores = ShardedScores.open(args.input)
        fit = lambda s: s.fit_sharded(scores, pool=pool, ray=args.ray)  # noqa: E731
    sel = fit(selector)  # source and scorers: the pool's provenance
    sel.record.command = command
    controls = []
    if args.controls:
        budget = selector.requested_budget()
        same_size = Budget("tokens", budget.value) if budget is not None and budget.kind == "tokens" else len(sel)
        controls = [
            fit(select.Random(
                budget=same_size, seed=getattr(selector, "seed", 0) + i, column=selector.scored_column(),
                token_column=selector.token_column,
            ))
            for i in range(args.controls)
        ]  # fmt: skip
    if args.sharded:
        pool = card_scores(scores, selector, pool)
        if args.pool is None:
            print(f"No --pool: the subset holds each row's pool index ({INDEX_COLUMN}) and the columns read.")
    token_column = selector.token_column
    card = {
        "pool": pool, "source_card_data": fetch_source_card_data(sel.record.source), "token_column": token_column,
        "output_format": args.output_format,
    }  # fmt: skip
    with staged_output(out, inputs, overwrite=args.overwrite) as folder:
        save_selection(
            sel.dataset, folder, sel.record, scores=pool if args.with_scores else None,
            random_baseline=controls[0] if controls else None, **card,
        )  # fmt: skip
    summaries = {"pool": describe(pool, token_column), args.method: describe(sel.dataset, token_column)}
    written = {args.method: out}
    if controls:
        with staged_output(controls_out, inputs, overwrite=args.overwrite) as folder:
            for control in controls:
                name, seed_folder = f"random seed {control.record.seed}", f"seed-{control.record.seed}"
                control.record.command = command
                save_selection(control.dataset, folder / seed_folder, control.record, **card)
                written[name] = controls_out / seed_folder
                summaries[name] = describe(control.dataset, token_column)
    print(table(summaries))
    print("\nFiles written:")
    for name, path in written.items():
        print(f"  {name:<16} {path}")
    return 0


def card_scores(scores: ShardedScores, selector: select.Selector, rows: Dataset | None) -> Dataset:
    """What the card and summary compare a sharded selection with: the score and token columns of the whole
    pool (read from the sidecars), with the pool's own columns when its `rows` are given."""
    from .distributed.sharded_select import read_columns

    wanted = [*read_columns(selector), selector.token_column]
    table = scores.gather([c for c in dict.fromkeys(wanted) if c in scores.columns and not _is_list(scores, c)])
    table = table.remove_columns([INDEX_COLUMN])
    for name in rows.column_names if rows is not None else []:
        if name not in table.column_names:
            table = table.add_column(name, rows.with_format("arrow")[name])
    return table


def _is_list(scores: ShardedScores, column: str) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = pq.read_schema(scores.paths[0]).field(column).type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def cmd_push(args: argparse.Namespace) -> int:
    from .push import plan_folder, push_folder

    options = {
        "drop_columns": args.drop_columns, "keep_scores": args.keep_scores, "license": args.license,
        "config_name": args.config_name, "split": args.split,
    }  # fmt: skip
    if args.dry_run:
        readme, files = plan_folder(args.folder, args.repo_id, **options)
        print(f"README.md (an existing repo's card is merged into it at push time):\n\n{readme}")
        print(f"Files for one commit to datasets/{args.repo_id} (plus deletion of stale shards in our config folders):")
        for path, size in files:
            print(f"  {path:<48} {size:>14,} bytes")
        print("\n--dry-run: nothing was sent to the Hub.")
        return 0
    info = push_folder(
        args.folder, args.repo_id, private=args.private, token=args.token, revision=args.revision,
        create_pr=args.create_pr, commit_message=args.message, timeout=args.timeout, **options,
    )  # fmt: skip
    print(f"Pushed {args.folder} to datasets/{args.repo_id}: {info.commit_url}")
    if info.pr_url:
        print(f"Pull request: {info.pr_url}")
    return 0


def summary(cls: type) -> str:
    """The first paragraph of a class's docstring, as one line."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def cmd_methods() -> int:
    from .cluster import KMeans
    from .scorers import SCORERS

    print("Scorers (hf-select score --method NAME):")
    for name, cls in sorted(SCORERS.items()):
        print(f"  {name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        print(f"    adds: {', '.join((*cls.score_columns, *cls.vector_columns, cls.error_column))}")
        for field in dataclasses.fields(cls):
            default = "required" if field.default is dataclasses.MISSING else f"default {field.default!r}"
            print(f"    {field.name}: {field.type} ({default})")
    print("\nSelectors (hf-select select INPUT --method NAME; --method NAME --help for its options):")
    for name, cls in sorted(select.SELECTORS.items()):
        python_only = "" if cls.cli else f" (Python only: hf_select.select.{cls.__name__})"
        print(f"  {name}: {summary(cls)}{python_only}")
        for option in field_options(cls):
            required = ", required" if option.required else f", default {option.default!r}"
            name = " / ".join(option.flags) if cls.cli else f"{option.name}="
            print(f"    {name} ({option.describe_type()}{required}): {option.help}")
    print("\nClustering (hf-select cluster):")
    print(f"  {KMeans.method}: {(KMeans.__doc__ or '').strip().splitlines()[0]}")
    print(f"    adds: {KMeans.output_column}, {KMeans.distance_column}")
    for field in dataclasses.fields(KMeans):
        if field.init and field.name not in ("output_column", "distance_column"):
            default = "required" if field.default is dataclasses.MISSING else f"default {field.default!r}"
            print(f"    {field.name}: {field.type} ({default})")
    return 0
