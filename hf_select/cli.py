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
import inspect
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, select
from .card import fetch_source_card_data
from .cluster import KMeans
from .conversation import detect_format
from .demo import print_demo, run_demo
from .errors import HFSelectError, InputError
from .estimate import estimate, format_estimate
from .pool import load_pool, prepare_output, save_scored, staged_output
from .save import save_selection
from .scorers import SCORERS, Scorer
from .select import Budget
from .summary import describe, table


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="Hub dataset id, save_to_disk folder, selection folder, or json/jsonl/parquet/csv file"
    )
    p.add_argument("--split", help="split to use (default: the only split, else 'train')")
    p.add_argument("--data-revision", help="Hub dataset revision")
    p.add_argument("--data-config", help="Hub dataset config name")
    p.add_argument("-o", "--output", required=True, help="output folder (never the input)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-select", description="Select strong subsets of SFT pools.")
    parser.add_argument("--version", action="version", version=f"hf-select {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="add score columns to a dataset")
    _add_input(p)
    p.add_argument("--method", required=True, choices=sorted(SCORERS))
    p.add_argument("--model", help="model path, Hub id or embedded:smollm2 (ce, ifd, selectit)")
    p.add_argument("--tokenizer", help="tokenizer path or Hub id (default: the model's)")
    p.add_argument("--revision", help="model / tokenizer revision on the Hub")
    p.add_argument("--template", default="auto", choices=["auto", "paper", "chat", "study"])
    p.add_argument("--turns", choices=["last", "all"], help="score the last assistant turn (default) or all")
    p.add_argument("--max-length", type=int, help="truncate rows to this many tokens (default 4096)")
    p.add_argument(
        "--batch-tokens", type=int, help="rows x padded length per batch (default 32768 on GPU, 4096 on CPU)"
    )
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--no-shift", dest="shift", action="store_false", default=None, help="ce: the study's bug")
    p.add_argument("--alpha", type=float, help="selectit: sentence-level alpha (default 0.2)")
    p.add_argument("--extra-models", help="selectit: comma-separated extra models for the model-level score")
    p.add_argument("--variant", choices=["spec", "study", "original"], help="selectit: whose SelectIT (default spec)")
    p.add_argument(
        "--ifd-response-span", choices=["exact", "text-search"], help="ifd: text-search = the study's span bug"
    )
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

    p = sub.add_parser(
        "cluster", help="k-means an embedding column: adds `cluster` and `cluster_distance` columns for `select`"
    )
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

    p = sub.add_parser("select", help="select a subset of a scored dataset by a budget")
    _add_input(p)
    p.add_argument("--method", required=True, choices=sorted(select.SELECTORS))
    p.add_argument("--column", help="score column (top-k, threshold, within-clusters)")
    p.add_argument("--budget", help="count (1000), fraction (0.01, 1%%) or tokens ('5M tokens')")
    p.add_argument("--smallest", action="store_true", help="keep the smallest scores instead of the largest")
    p.add_argument("--min-value", type=float)
    p.add_argument("--max-value", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cluster-column", default="cluster")
    p.add_argument("--token-column", default="n_tokens")
    p.add_argument("--controls", type=int, default=0, help="also write N random controls of the same size")
    p.add_argument("--with-scores", action="store_true", help="also write the whole scored pool under scores/")
    p.add_argument("--keep-above-one", action="store_true", help="ifd: keep rows with IFD > 1 too")
    p.add_argument("--k1", type=int, default=10_000, help="zip: stage-1 candidates per round")
    p.add_argument("--k2", type=int, default=200, help="zip: stage-2 survivors per round")
    p.add_argument("--k3", type=int, default=100, help="zip: picks per round")
    p.add_argument("--zip-text", choices=["rendered", "repr"], default="rendered", help="zip: what is compressed")
    p.add_argument("--zip-level", type=int, default=9, help="zip: zlib level")
    p.add_argument("--workers", type=int, help="zip: worker processes (default: the cores)")
    p.add_argument("--init", help="kcenter: number of random start rows, or comma-separated pool indices")
    p.add_argument("--kcenter-mode", choices=["greedy", "one-shot"], default="greedy")
    p.add_argument("--device", help="kcenter: torch device (default: cuda when available)")
    p.add_argument("--n-clusters", type=int, help="kmeans: number of clusters")
    p.add_argument("--score-column", help="kmeans: fill each cluster's quota by this score (default: centroid)")
    p.add_argument("--niter", type=int, default=20, help="kmeans: iterations")
    p.add_argument("--spherical", action="store_true", help="kmeans: cosine clusters (normalised embeddings)")

    p = sub.add_parser("push", help="publish a selection folder to a Hub dataset repo in one commit")
    p.add_argument("folder", help="selection folder written by `hf-select select`")
    p.add_argument("--repo-id", required=True, help="dataset repo, e.g. me/sharegpt-longest-1000")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--message", help="commit message (default: method, rows and budget of the selection)")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the `hf auth login` cache)")
    p.add_argument("--dry-run", action="store_true", help="print the card and the files, send nothing")

    sub.add_parser("methods", help="list scorers and selectors with their parameters")

    p = sub.add_parser("demo", help="the embedded default: longest 1,000 ShareGPT rows vs 5 random controls")
    p.add_argument("-o", "--output", default="hf-select-demo")
    p.add_argument("--budget", type=int, help="rows to select (default 1000; with --limit, a tenth of the rows)")
    p.add_argument("--controls", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-proc", type=int)
    p.add_argument("--limit", type=int, help="use only the first N rows of the pool (a quick look)")
    p.add_argument("--overwrite", action="store_true")
    return parser


def build_scorer(args: argparse.Namespace) -> Scorer:
    """The scorer named by `--method`, configured from the flags that are its dataclass fields."""
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
    unused = [
        f"--{n.replace('_', '-')}"
        for n in (
            "model",
            "turns",
            "max_length",
            "batch_tokens",
            "dtype",
            "shift",
            "alpha",
            "extra_models",
            "variant",
            "ifd_response_span",
            "backend",
            "endpoint",
            "kind",
            "text",
            "normalize",
        )
        if getattr(args, n, None) is not None and n not in names
    ]
    if unused:
        raise InputError(f"--method {args.method} does not take {', '.join(unused)}")
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(f"invalid options for --method {args.method}: {err}") from err


def cmd_score(args: argparse.Namespace, command: str) -> int:
    scorer = build_scorer(args)
    if not args.dry_run:
        out = prepare_output(args.output, [args.input], overwrite=args.overwrite)  # fail before the scoring
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config
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
    km = KMeans(
        n_clusters=args.n_clusters, column=args.column, seed=args.seed, niter=args.niter, spherical=args.spherical,
        init=args.init, max_points_per_centroid=args.max_points_per_centroid,
    )  # fmt: skip
    out = prepare_output(args.output, [args.input], overwrite=args.overwrite)
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config
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


def cmd_select(args: argparse.Namespace, command: str) -> int:
    out = prepare_output(args.output, [args.input], overwrite=args.overwrite)
    controls_out = Path(f"{out}-controls")
    if args.controls:
        prepare_output(controls_out, [args.input], overwrite=args.overwrite)
    pool, source, scorers = load_pool(
        args.input, split=args.split, revision=args.data_revision, config=args.data_config
    )
    common: dict[str, Any] = {"token_column": args.token_column, "source": source, "scorers": scorers}
    needs_column = args.method in ("top-k", "threshold", "within-clusters", "kcenter", "kmeans")
    if needs_column and not args.column:
        raise InputError(f"--method {args.method} needs --column")
    if args.method != "threshold" and not args.budget:
        raise InputError(f"--method {args.method} needs --budget")
    budget = Budget.parse(args.budget) if args.budget else None
    if args.method == "top-k":
        sel = select.top_k(
            pool, args.column, budget, largest=not args.smallest, min_value=args.min_value,
            max_value=args.max_value, **common,
        )  # fmt: skip
    elif args.method == "threshold":
        sel = select.threshold(pool, args.column, min_value=args.min_value, max_value=args.max_value, **common)
    elif args.method == "random":
        sel = select.random(pool, budget, seed=args.seed, column=args.column, **common)
    elif args.method == "ifd":
        args.column = args.column or "ifd"
        sel = select.ifd_top_k(pool, budget, column=args.column, keep_above_one=args.keep_above_one, **common)
    elif args.method == "within-clusters":
        sel = select.within_clusters(
            pool, args.cluster_column, args.column, budget, largest=not args.smallest, **common
        )
    elif args.method == "zip":
        sel = select.zip_select(
            pool, budget, k1=args.k1, k2=args.k2, k3=args.k3, text=args.zip_text, level=args.zip_level,
            workers=args.workers, **common,
        )  # fmt: skip
    elif args.method == "kmeans":
        if not args.n_clusters:
            raise InputError("--method kmeans needs --n-clusters")
        sel = select.kmeans_select(
            pool, args.column, budget, n_clusters=args.n_clusters, score_column=args.score_column,
            largest=not args.smallest, seed=args.seed, niter=args.niter, spherical=args.spherical, **common,
        )  # fmt: skip
    elif args.method == "centroid":
        distance = args.column or "cluster_distance"
        sel = select.centroids(pool, budget, cluster_column=args.cluster_column, distance_column=distance, **common)
    else:
        init = [int(x) for x in args.init.split(",")] if args.init and "," in args.init else args.init
        sel = select.kcenter_greedy(
            pool, args.column, budget, init=int(init) if isinstance(init, str) else init, seed=args.seed,
            mode=args.kcenter_mode, device=args.device, **common,
        )  # fmt: skip
    sel.record.command = command
    controls = []
    if args.controls:
        same_size = Budget("tokens", budget.value) if budget is not None and budget.kind == "tokens" else len(sel)
        scalar = args.column if args.method in ("top-k", "ifd", "threshold", "within-clusters") else None
        controls = select.random_controls(
            pool, same_size, n_controls=args.controls, seed=args.seed, column=scalar, **common
        )
    card = {"pool": pool, "source_card_data": fetch_source_card_data(source), "token_column": args.token_column}
    with staged_output(out, [args.input], overwrite=args.overwrite) as folder:
        save_selection(
            sel.dataset, folder, sel.record, scores=pool if args.with_scores else None,
            random_baseline=controls[0] if controls else None, **card,
        )  # fmt: skip
    summaries = {
        "pool": describe(pool, args.token_column),
        args.method: describe(sel.dataset, args.token_column),
    }
    written = {args.method: out}
    if controls:
        with staged_output(controls_out, [args.input], overwrite=args.overwrite) as folder:
            for control in controls:
                name, seed_folder = f"random seed {control.record.seed}", f"seed-{control.record.seed}"
                control.record.command = command
                save_selection(control.dataset, folder / seed_folder, control.record, **card)
                written[name] = controls_out / seed_folder
                summaries[name] = describe(control.dataset, args.token_column)
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
    print("Scorers (hf-select score --method NAME):")
    for name, cls in sorted(SCORERS.items()):
        print(f"  {name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        print(f"    adds: {', '.join((*cls.score_columns, *cls.vector_columns, cls.error_column))}")
        for field in dataclasses.fields(cls):
            default = "required" if field.default is dataclasses.MISSING else f"default {field.default!r}"
            print(f"    {field.name}: {field.type} ({default})")
    print("\nSelectors (hf-select select --method NAME):")
    for name, fn in select.SELECTORS.items():
        print(f"  {name}: {(fn.__doc__ or '').strip().splitlines()[0]}")
        for param in list(inspect.signature(fn).parameters.values())[1:]:
            if param.name in ("source", "scorers"):
                continue
            default = "required" if param.default is inspect.Parameter.empty else f"default {param.default!r}"
            print(f"    {param.name}: {param.annotation} ({default})")
    print("\nClustering (hf-select cluster):")
    print(f"  {KMeans.method}: {(KMeans.__doc__ or '').strip().splitlines()[0]}")
    print(f"    adds: {KMeans.output_column}, {KMeans.distance_column}")
    for field in dataclasses.fields(KMeans):
        if field.init and field.name not in ("output_column", "distance_column"):
            default = "required" if field.default is dataclasses.MISSING else f"default {field.default!r}"
            print(f"    {field.name}: {field.type} ({default})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = shlex.join(["hf-select", *argv])
    try:
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
        result = run_demo(
            args.output, budget=args.budget, controls=args.controls, seed=args.seed, num_proc=args.num_proc,
            limit=args.limit, overwrite=args.overwrite, command=command,
        )  # fmt: skip
        print_demo(result)
        return 0
    except HFSelectError as err:
        print(f"hf-select: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
