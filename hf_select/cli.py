"""The `hf-select` command line: `score`, `cluster`, `select`, `push`, `methods`, `demo`.

Example:
    $ hf-select score data.jsonl --method token-length --tokenizer HuggingFaceTB/SmolLM2-135M-Instruct -o scored
    $ hf-select cluster scored-emb --column embedding --n-clusters 100 -o clustered
    $ hf-select select clustered --method within-clusters --column n_tokens --budget 1000 -o km-longest
    $ hf-select select scored --method top-k --column n_tokens --budget 1000 --controls 5 -o longest-1000
    $ hf-select push longest-1000 --repo-id me/sharegpt-longest-1000
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import HFSelectError, InputError
from .interrupts import EXIT_INTERRUPTED, INTERRUPTED, caused_by_ctrl_c, ctrl_c_quiets_workers
from .options import Option, add_flags, add_options, build, field_options, given

if TYPE_CHECKING:
    from . import select
    from .scorers import Scorer

# Everything that imports `datasets`, torch or the scorers is imported inside the command that needs it,
# and each subcommand's arguments are added only when that subcommand is parsed: `hf-select --help` and
# `--version` answer without importing `datasets` (tests/test_cli_errors.py checks it).


class _LazySubParsers(argparse._SubParsersAction):  # argparse's own action, filled in on first use
    """Subcommands whose arguments are added when that subcommand is parsed (or its help printed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fillers: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def add_lazy(
        self, name: str, fill: Callable[[argparse.ArgumentParser], None], **kwargs: Any
    ) -> argparse.ArgumentParser:
        parser = self.add_parser(name, **kwargs)
        self.fillers[name] = fill
        return parser

    def fill(self, name: str) -> None:
        if (fill := self.fillers.pop(name, None)) is not None:
            fill(self._name_parser_map[name])

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, *rest: Any) -> None:
        self.fill(values[0])
        super().__call__(parser, namespace, values, *rest)


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="Hub dataset id, save_to_disk folder, selection folder, or json/jsonl/parquet/csv file"
    )
    p.add_argument(
        "--split", help="split of a Hub dataset, DatasetDict folder or folder of split-named files (default: "
        "the only split, else 'train'); a single file or dataset is refused any other name",
    )  # fmt: skip
    p.add_argument("--data-revision", help="Hub dataset revision")
    p.add_argument("--data-config", help="Hub dataset config name")
    p.add_argument("--limit", type=int, help="use only the first N rows of the input (recorded in the source)")
    p.add_argument("-o", "--output", required=True, help="output folder (never the input)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")


def _score_arguments(p: argparse.ArgumentParser) -> None:
    from .scorers import SCORERS

    _add_input(p)
    p.add_argument("--method", required=True, choices=sorted(SCORERS))
    p.add_argument("--model", help="model path, Hub id or embedded:smollm2 (ce, ifd, selectit)")
    p.add_argument("--tokenizer", help="tokenizer path or Hub id (default: the model's)")
    p.add_argument("--revision", help="model / tokenizer revision on the Hub")
    p.add_argument("--template", default="auto", choices=["auto", "paper", "chat"])
    p.add_argument("--turns", choices=["last", "all"], help="score the last assistant turn (default) or all")
    p.add_argument("--max-length", type=int, help="truncate rows to this many tokens (default 4096)")
    p.add_argument(
        "--batch-tokens", type=int, help="rows x padded length per batch (default 32768 on GPU, 4096 on CPU)"
    )
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--no-shift", dest="shift", action="store_false", default=None, help="ce: the study's bug")
    p.add_argument("--alpha", type=float, help="selectit: sentence-level alpha (default 0.2)")
    p.add_argument("--extra-models", help="selectit: comma-separated extra models for the model-level score")
    p.add_argument("--backend", choices=["local", "tgi", "vllm"], help="where the model runs (default local)")
    p.add_argument("--endpoint", help="server URL for --backend tgi (TGI) or vllm (OpenAI-compatible vLLM)")
    p.add_argument("--kind", choices=["lm", "sentence-transformers"], help="embed: what kind of model embeds")
    p.add_argument("--text", choices=["conversation", "instruction"], help="embed: what text is embedded")
    p.add_argument("--normalize", action="store_true", default=None, help="embed: L2-normalise the vectors")
    p.add_argument("--trust-remote-code", action="store_true", default=None)
    p.add_argument("--format", choices=["sharegpt", "messages", "alpaca", "prompt_response"])
    p.add_argument("--columns", help="comma-separated columns for --format (e.g. question,answer)")
    p.add_argument("--num-proc", type=int, help="worker processes (one per GPU for model scorers)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--strict", action="store_true", default=None, help="stop at the first bad row")
    p.add_argument("--dry-run", action="store_true", help="time a short probe and estimate the run; write nothing")
    p.add_argument("--probe-rows", type=int, default=64, help="rows the --dry-run probe scores")


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    _add_input(p)
    p.add_argument("--column", default="embedding", help="embedding column: a list of numbers per row")
    p.add_argument("--n-clusters", type=int, required=True, help="number of clusters (K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--niter", type=int, default=20, help="k-means iterations")
    p.add_argument("--spherical", action="store_true", help="cosine clusters (for normalised embeddings)")
    p.add_argument("--init", choices=["random", "k-means++"], default="random", help="centroid initialisation")
    p.add_argument(
        "--max-points-per-centroid", type=int, default=256,
        help="train on a seeded sample of at most this many rows per cluster (faiss's default 256); "
        "every row is then assigned to its nearest centroid",
    )  # fmt: skip


def _select_arguments(p: argparse.ArgumentParser) -> None:
    from . import select

    _add_input(p)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with --method: that method's options)")
    p.add_argument("--method", choices=sorted(n for n, c in select.SELECTORS.items() if c.cli))
    p.add_argument("--controls", type=int, default=0, help="also write N random controls of the same size")
    p.add_argument("--with-scores", action="store_true", help="also write the whole scored pool under scores/")
    add_flags(
        p.add_argument_group("method options (each method takes its own: see --method M --help)"), selector_options()
    )


def _push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="selection folder written by `hf-select select`")
    p.add_argument("--repo-id", required=True, help="dataset repo, e.g. me/sharegpt-longest-1000")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--message", help="commit message (default: method, rows and budget of the selection)")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the `hf auth login` cache)")
    p.add_argument("--dry-run", action="store_true", help="print the card and the files, send nothing")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="hf-select-demo")
    p.add_argument("--budget", type=int, help="rows to select (default 1000; with --limit, a tenth of the rows)")
    p.add_argument("--controls", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-proc", type=int)
    p.add_argument("--limit", type=int, help="use only the first N rows of the pool (a quick look)")
    p.add_argument("--overwrite", action="store_true")


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The `hf-select` parser. With `lazy`, a subcommand's arguments (and the imports they need) are added
    only when that subcommand is parsed, so that `hf-select --help` stays fast."""
    parser = argparse.ArgumentParser(prog="hf-select", description="Select strong subsets of SFT pools.")
    parser.register("action", "lazy_parsers", _LazySubParsers)
    parser.add_argument("--version", action="version", version=f"hf-select {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, action="lazy_parsers")
    sub.add_lazy("score", _score_arguments, help="add score columns to a dataset")
    sub.add_lazy(
        "cluster", _cluster_arguments,
        help="k-means an embedding column: adds `cluster` and `cluster_distance` columns for `select`",
    )  # fmt: skip
    sub.add_lazy(
        "select", _select_arguments, help="select a subset of a scored dataset by a budget", add_help=False,
        description="Select a subset with --method M; `hf-select select --method M --help` lists M's options.",
    )  # fmt: skip
    sub.add_lazy("push", _push_arguments, help="publish a selection folder to a Hub dataset repo in one commit")
    sub.add_parser("methods", help="list scorers and selectors with their parameters")
    sub.add_lazy("demo", _demo_arguments, help="the embedded default: longest 1,000 ShareGPT rows vs 5 random controls")
    if not lazy:
        for name in list(sub.fillers):
            sub.fill(name)
    return parser


def build_scorer(args: argparse.Namespace) -> Scorer:
    """The scorer named by `--method`, configured from the flags that are its dataclass fields."""
    from .scorers import SCORERS

    cls = SCORERS[args.method]
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.columns and not args.format:
        raise InputError("--columns needs --format")
    if args.columns:
        values["columns"] = tuple(args.columns.split(","))
    if args.extra_models:
        values["extra_models"] = tuple(args.extra_models.split(","))
    if "model" in names and not args.model:
        raise InputError(f"--method {args.method} needs --model")
    if args.method == "token-length":
        values["tokenizer"] = args.tokenizer or args.model
        values.pop("model", None)
        if not values["tokenizer"]:
            raise InputError("--method token-length needs --tokenizer (or --model)")
    flags = ("model", "turns", "max_length", "batch_tokens", "dtype", "shift", "alpha", "extra_models", "backend")
    flags += ("endpoint", "kind", "text", "normalize")
    unused = [f"--{n.replace('_', '-')}" for n in flags if getattr(args, n, None) is not None and n not in names]
    if unused:
        raise InputError(f"--method {args.method} does not take {', '.join(unused)}")
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(f"invalid options for --method {args.method}: {err}") from err


def cmd_score(args: argparse.Namespace, command: str) -> int:
    from .conversation import detect_format
    from .estimate import estimate, format_estimate
    from .pool import load_pool, prepare_output, save_scored, staged_output
    from .summary import describe, table

    scorer = build_scorer(args)
    if not args.dry_run:
        out = prepare_output(args.output, [args.input], overwrite=args.overwrite)  # fail before the scoring
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
    )
    detect_format(pool.column_names, scorer.format, scorer.columns)  # fail now, naming the columns
    if args.dry_run:
        print(format_estimate(estimate(scorer, pool, probe_rows=args.probe_rows, num_proc=args.num_proc)))
        return 0
    scored = scorer.map(pool, num_proc=args.num_proc, batch_size=args.batch_size)
    entry = {**scorer.describe(), "command": command}
    with staged_output(out, [args.input], overwrite=args.overwrite) as folder:
        save_scored(scored, folder, source=source, scorers=[*scorers, entry])
    errors = sum(1 for e in scored[scorer.error_column] if e)
    print(table({"scored": describe(scored)}))
    if errors:
        print(f"\n{errors:,} rows could not be scored (reason in '{scorer.error_column}').")
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
    from . import select

    return [option for cls in select.SELECTORS.values() if cls.cli for option in field_options(cls)]


def method_help(method: str) -> str:
    """`hf-select select --method M --help`: the method's sentence and each of its options."""
    from . import select

    cls = select.SELECTORS[method]
    parser = argparse.ArgumentParser(
        prog=f"hf-select select INPUT --method {method}", description=summary(cls), add_help=False
    )
    add_options(parser.add_argument_group(f"{method} options"), field_options(cls))
    return parser.format_help()


def build_selector(args: argparse.Namespace) -> select.Selector:
    """The selector named by `--method`, from the options given: an option of another method is refused,
    naming the ones this method takes."""
    from . import select

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
    from . import select
    from .card import fetch_source_card_data
    from .pool import load_pool, prepare_output, staged_output
    from .save import save_selection
    from .select import Budget
    from .summary import describe, table

    selector = build_selector(args)  # every option checked before anything is read
    out = prepare_output(args.output, [args.input], overwrite=args.overwrite)
    controls_out = Path(f"{out}-controls")
    if args.controls:
        prepare_output(controls_out, [args.input], overwrite=args.overwrite)
    pool = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config, limit=args.limit
    ).dataset
    sel = selector.fit(pool)  # source and scorers: the pool's provenance
    sel.record.command = command
    controls = []
    if args.controls:
        budget = selector.requested_budget()
        same_size = Budget("tokens", budget.value) if budget is not None and budget.kind == "tokens" else len(sel)
        controls = select.random_controls(
            pool, same_size, n_controls=args.controls, seed=getattr(selector, "seed", 0),
            column=selector.scored_column(), token_column=selector.token_column,
        )  # fmt: skip
    token_column = selector.token_column
    card = {"pool": pool, "source_card_data": fetch_source_card_data(sel.record.source), "token_column": token_column}
    with staged_output(out, [args.input], overwrite=args.overwrite) as folder:
        save_selection(
            sel.dataset, folder, sel.record, scores=pool if args.with_scores else None,
            random_baseline=controls[0] if controls else None, **card,
        )  # fmt: skip
    summaries = {"pool": describe(pool, token_column), args.method: describe(sel.dataset, token_column)}
    written = {args.method: out}
    if controls:
        with staged_output(controls_out, [args.input], overwrite=args.overwrite) as folder:
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


def cmd_push(args: argparse.Namespace) -> int:
    from .push import plan_folder, push_folder

    if args.dry_run:
        readme, files = plan_folder(args.folder, args.repo_id)
        print(f"README.md (an existing repo's card is merged into it at push time):\n\n{readme}")
        print(f"Files for one commit to datasets/{args.repo_id} (plus deletion of stale shards in our config folders):")
        for path, size in files:
            print(f"  {path:<48} {size:>14,} bytes")
        print("\n--dry-run: nothing was sent to the Hub.")
        return 0
    info = push_folder(
        args.folder, args.repo_id, private=args.private, token=args.token, revision=args.revision,
        create_pr=args.create_pr, commit_message=args.message,
    )  # fmt: skip
    print(f"Pushed {args.folder} to datasets/{args.repo_id}: {info.commit_url}")
    if info.pr_url:
        print(f"Pull request: {info.pr_url}")
    return 0


def cmd_methods() -> int:
    from . import select
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


def summary(cls: type) -> str:
    """The first paragraph of a class's docstring, as one line."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def select_help(argv: Sequence[str]) -> str | None:
    """The help `hf-select select ... --help` asks for (that method's, with `--method M`), else None."""
    if not argv or argv[0] != "select" or not {"-h", "--help"} & set(argv):
        return None
    from . import select

    methods = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--method"]
    methods += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--method=")]
    if methods and methods[-1] in select.SELECTORS:
        return method_help(methods[-1])
    subparsers = next(a for a in build_parser(lazy=True)._actions if isinstance(a, _LazySubParsers))
    subparsers.fill("select")
    return subparsers.choices["select"].format_help()


_AT_LEAST_ONE = ("num_proc", "limit", "batch_size", "batch_tokens", "probe_rows")
"""Integer options that only make sense from 1 up (a 0 or a negative count is a mistake, not a request);
the selectors' and k-means' own counts are checked where they are used, naming their parameters."""


def _check_counts(args: argparse.Namespace) -> None:
    for name in _AT_LEAST_ONE:
        value = getattr(args, name, None)
        if isinstance(value, int) and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _run(args: argparse.Namespace, command: str) -> int:
    _check_counts(args)
    if args.command == "score":
        return cmd_score(args, command)
    if args.command == "cluster":
        return cmd_cluster(args, command)
    if args.command == "select":
        return cmd_select(args, command)
    if args.command == "methods":
        return cmd_methods()
    if args.command == "push":
        return cmd_push(args)
    from .demo import print_demo, run_demo

    result = run_demo(
        args.output, budget=args.budget, controls=args.controls, seed=args.seed, num_proc=args.num_proc,
        limit=args.limit, overwrite=args.overwrite, command=command,
    )  # fmt: skip
    print_demo(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hf-select`: user mistakes print one `hf-select: error:` line and return 2, Ctrl-C prints one
    line and returns 130 (`interrupts`), argparse's own errors exit 2 with its usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["hf-select", *argv])
    try:
        with ctrl_c_quiets_workers():
            help_text = select_help(argv)
            if help_text is not None:
                print(help_text)
                return 0
            return _run(build_parser(lazy=True).parse_args(argv), command)
    except HFSelectError as err:
        print(f"hf-select: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not caused_by_ctrl_c(err):
            raise
    except KeyboardInterrupt:
        pass
    print(INTERRUPTED, file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
