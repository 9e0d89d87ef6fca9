"""The `hf-select` command line: `score`, `merge`, `cluster`, `select`, `push`, `compare`, `less-warmup`, `methods`,
`demo`.

Example:
    $ hf-select score data.jsonl --method token-length --tokenizer HuggingFaceTB/SmolLM2-135M-Instruct -o scored
    $ hf-select cluster scored-emb --column embedding --n-clusters 100 -o clustered
    $ hf-select select clustered --method within-clusters --column n_tokens --budget 1000 -o km-longest
    $ hf-select select scored --method top-k --column n_tokens --budget 1000 --controls 5 -o longest-1000
    $ hf-select push longest-1000 --repo-id me/sharegpt-longest-1000
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import CLI_PID_VARIABLE, __version__
from .errors import HFSelectError, InputError

if TYPE_CHECKING:
    pass

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
    from .distributed.commands import add_score_arguments
    from .scorers import SCORERS
    from .scorers.cli_options import add_scorer_flags

    _add_input(p)
    p.add_argument("--method", required=True, choices=sorted(SCORERS))
    add_scorer_flags(p)  # every scorer field: --model, --max-length, --shift/--no-shift, --timeout, ...
    p.add_argument(
        "--num-proc", type=int,
        help="worker processes (default: every core for token-length, one process for model scorers; "
        "give one per GPU)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument(
        "--checkpoint-every", type=int,
        help="score this many rows at a time into sidecar files beside the output; a re-run resumes from them",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true", help="time a short probe and estimate the run; write nothing")
    p.add_argument("--probe-rows", type=int, default=64, help="rows the --dry-run probe scores")
    add_score_arguments(p)


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    from .distributed.commands import add_merge_arguments

    add_merge_arguments(p)


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
    from .commands import selector_options
    from .options import add_flags

    _add_input(p)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with --method: that method's options)")
    p.add_argument("--method", choices=sorted(n for n, c in select.SELECTORS.items() if c.cli))
    p.add_argument("--controls", type=int, default=0, help="also write N random controls of the same size")
    p.add_argument("--with-scores", action="store_true", help="also write the whole scored pool under scores/")
    p.add_argument(
        "--sharded", action="store_true",
        help="INPUT is a folder of score sidecars (scores-*-of-*.parquet, from sharded scoring): select from them "
        "exactly as from the merged pool; the record names the shards",
    )  # fmt: skip
    p.add_argument(
        "--pool", help="with --sharded: the pool the sidecars score (any INPUT form; --split etc. apply to it), for "
        "the subset's rows; without it the subset holds each row's pool index and the score columns read",
    )  # fmt: skip
    p.add_argument("--ray", action="store_true", help="with --sharded: run the per-shard steps on Ray (RAY_ADDRESS)")
    p.add_argument(
        "--output-format", choices=["original", "messages"], default="original",
        help="the subset's rows as in the pool (original), or as TRL-ready `messages` (role/content turns)",
    )  # fmt: skip
    group = p.add_argument_group("method options (each method takes its own: see --method M --help)")
    add_flags(group, selector_options())


def _push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="selection folder written by `hf-select select`")
    p.add_argument("--repo-id", required=True, help="dataset repo, e.g. me/sharegpt-longest-1000")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--message", help="commit message (default: method, rows and budget of the selection)")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the `hf auth login` cache)")
    p.add_argument("--dry-run", action="store_true", help="print the card and the files, send nothing")
    p.add_argument("--timeout", type=float, help="seconds without an answer before a request is retried (default 120)")
    p.add_argument(
        "--drop-columns",
        nargs="+",
        action="extend",
        default=[],
        metavar="COLUMN",
        help="columns to leave out of the pushed data",
    )
    p.add_argument(
        "--keep-scores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="push the scored pool (scores/) when the folder has it (default: yes)",
    )
    p.add_argument("--license", help="the card's license (a Hub license id, e.g. apache-2.0; default: the source's)")
    p.add_argument("--config-name", default="default", help="config name of the subset (default: default)")
    p.add_argument("--split", default="train", help="split name of the subset and the scored pool (default: train)")


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    from .compare.options import add_arguments

    add_arguments(p)


def _less_warmup_arguments(p: argparse.ArgumentParser) -> None:
    from .less.options import add_arguments

    add_arguments(p)


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
        "merge", _merge_arguments,
        help="join score sidecars (from score --shard/--scores-only) into the pool, in pool order",
    )  # fmt: skip
    sub.add_lazy(
        "cluster", _cluster_arguments,
        help="k-means an embedding column: adds `cluster` and `cluster_distance` columns for `select`",
    )  # fmt: skip
    sub.add_lazy(
        "select", _select_arguments, help="select a subset of a scored dataset by a budget", add_help=False,
        description="Select a subset with --method M; `hf-select select --method M --help` lists M's options.",
    )  # fmt: skip
    sub.add_lazy("push", _push_arguments, help="publish a selection folder to a Hub dataset repo in one commit")
    sub.add_lazy(
        "compare", _compare_arguments,
        help="does a selection beat random? fine-tune on it and its controls, evaluate, test",
    )  # fmt: skip
    sub.add_lazy(
        "less-warmup", _less_warmup_arguments,
        help="LESS's warm-up: a LoRA on a seeded sample of the pool, a checkpoint per epoch (resumable)",
    )  # fmt: skip
    sub.add_parser("methods", help="list scorers and selectors with their parameters")
    sub.add_lazy("demo", _demo_arguments, help="the embedded default: longest 1,000 ShareGPT rows vs 5 random controls")
    if not lazy:
        for name in list(sub.fillers):
            sub.fill(name)
    return parser


_AT_LEAST_ONE = (
    "num_proc", "limit", "batch_size", "batch_tokens", "probe_rows", "niter",
    "workers", "k1", "k2", "k3", "shards", "actors",
)  # fmt: skip
"""Integer options that only make sense from 1 up (a 0 or a negative count is a mistake, not a request)."""


def _check_counts(args: argparse.Namespace) -> None:
    for name in _AT_LEAST_ONE:
        value = getattr(args, name, getattr(args, "flag:" + name.replace("_", "-"), None))  # or a field's flag
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, int) and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _run(args: argparse.Namespace, command: str) -> int:
    from . import commands

    _check_counts(args)
    if args.command == "score":
        return commands.cmd_score(args, command)
    if args.command == "merge":
        from .distributed.commands import cmd_merge

        return cmd_merge(args, command)
    if args.command == "cluster":
        return commands.cmd_cluster(args, command)
    if args.command == "select":
        return commands.cmd_select(args, command)
    if args.command == "methods":
        return commands.cmd_methods()
    if args.command == "push":
        return commands.cmd_push(args)
    if args.command == "compare":
        from .compare.options import run

        return run(args)
    if args.command == "less-warmup":
        from .less.options import run as run_less_warmup

        return run_less_warmup(args)
    from .demo import print_demo, run_demo

    result = run_demo(
        args.output, budget=args.budget, controls=args.controls, seed=args.seed, num_proc=args.num_proc,
        limit=args.limit, overwrite=args.overwrite, command=command,
    )  # fmt: skip
    print_demo(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hf-select`: user mistakes print one `hf-select: error:` line and return 2, Ctrl-C prints one
    line and returns 130 (the shell's code for SIGINT), argparse's own errors exit 2 with its usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["hf-select", *argv])
    previous = _quiet_workers_on_ctrl_c()
    try:
        if argv[:1] == ["select"] and {"-h", "--help"} & set(argv):  # the chosen method's own options
            from .commands import select_help

            print(select_help(argv, build_parser))
            return 0
        args = build_parser(lazy=True).parse_args(argv)
        return _run(args, command)
    except HFSelectError as err:
        print(f"hf-select: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # `hf-select ... | head`: the reader left; no traceback, as other Unix tools
        _stdout_to_devnull()
        return 141  # the shell's code for SIGPIPE
    except Exception as err:
        # worker pools (num_proc) fail in their own ways while Ctrl-C stops them
        if _caused_by_ctrl_c(err) or (previous is not None and _ctrl_c_seen()):
            return _interrupted()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            os.environ.pop(CLI_PID_VARIABLE, None)


def _quiet_workers_on_ctrl_c() -> Any:
    """Ctrl-C reaches every process of the terminal's group: `datasets` workers (forked ones through this
    handler, spawned ones through `CLI_PID_VARIABLE`) then exit quietly (SystemExit) while this process
    reports it once. Returns the handler to restore (None if unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    main_pid = os.getpid()
    _SIGINT.clear()
    os.environ[CLI_PID_VARIABLE] = str(main_pid)  # spawned workers: see hf_select/__init__.py

    def on_sigint(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            raise SystemExit(130)
        _SIGINT.set()
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, on_sigint)


_SIGINT = threading.Event()  # set by this process's Ctrl-C handler


def _ctrl_c_seen(grace: float = 0.5) -> bool:
    """Whether Ctrl-C reached this process, now or within `grace` seconds: a worker that Ctrl-C stopped
    (say, in the middle of an import) can report its own error a moment before this process runs its
    handler, and the error then carries no trace of the interrupt."""
    if _SIGINT.is_set():
        return True
    try:
        _SIGINT.wait(grace)
    except KeyboardInterrupt:
        return True
    return _SIGINT.is_set()


def _caused_by_ctrl_c(err: BaseException | None) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _interrupted() -> int:
    print("hf-select: interrupted (Ctrl-C); outputs are written only when complete", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
