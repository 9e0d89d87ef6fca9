"""Does selecting the longest rows beat random? Select 200 rows, write 3 random controls of the same size,
fine-tune SmolLM2-135M-Instruct on each (tiny settings, CPU) and test the selection against the controls.

    python examples/compare_vs_random.py -o compare-demo

Defaults: the first 2,000 rows of the embedded ShareGPT pool, token length by the SmolLM2 tokenizer,
1 epoch at max length 64, the held-out response loss on 30 pool rows in no subset. Writes
`OUT/longest-200/` (with `compare/report.md` and `compare/compare.json`) and `OUT/longest-200-controls/`,
and prints the report. Runs are cached (`--cache-dir`, default `OUT/cache`): a re-run reuses them.

Why max length 64: ShareGPT's rows are long (median ~2,000 SmolLM2 tokens in the first 3,000 rows; only 160 of
those fit in 256 tokens), and on a shared 2-core CPU TRL's SFTTrainer trained SmolLM2-135M at about 14
tokens/s (16 rows, 1,389 tokens at max length 256: 101 s). 200 rows whose responses survive at 256-512
tokens are 40,000-100,000 tokens per run: one to two hours per run, four runs here. At 64 most of the
longest rows keep no response token (the report's proxies table shows how many do), so this run shows the
pipeline, not the method; give it a GPU and `--max-length 1024 --epochs 3` for an answer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from hf_select import TokenLengthScorer, embedded, select
from hf_select.compare import TrainSettings, compare
from hf_select.compare.report import render_report
from hf_select.errors import HFSelectError
from hf_select.pool import load_pool
from hf_select.save import save_selection


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=embedded.SHAREGPT, help="Hub id, folder or json/jsonl/parquet file")
    parser.add_argument("--rows", type=int, default=2000, help="use the first N rows of the pool")
    parser.add_argument("--model", default=embedded.SMOLLM2, help="base model (and tokenizer for token length)")
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--controls", type=int, default=3)
    parser.add_argument("--heldout", type=int, default=30, help="held-out pool rows to evaluate on")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", help="default: OUT/cache")
    parser.add_argument("-o", "--output", default="compare-demo")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    out = Path(args.output)
    selection_dir, controls_dir = out / f"longest-{args.budget}", out / f"longest-{args.budget}-controls"
    if selection_dir.exists() and not args.overwrite:
        print(f"error: {selection_dir} exists (pass --overwrite)", file=sys.stderr)
        return 2
    try:
        loaded = load_pool(args.pool)
        pool = loaded.dataset.select(range(min(args.rows, len(loaded.dataset))))
        scorer = TokenLengthScorer(tokenizer=args.model)
        scored = pool.map(scorer, batched=True)
        longest = select.top_k(scored, "n_tokens", args.budget, source=loaded.source, scorers=[scorer.describe()])
        controls = select.random_controls(scored, args.budget, n_controls=args.controls, seed=0, column="n_tokens")
        shutil.rmtree(selection_dir, ignore_errors=True)
        shutil.rmtree(controls_dir, ignore_errors=True)
        save_selection(longest.dataset, selection_dir, longest.record, card=False)
        for control in controls:
            save_selection(control.dataset, controls_dir / f"seed-{control.record.seed}", control.record, card=False)
        settings = TrainSettings(
            model=args.model, epochs=args.epochs, max_length=args.max_length, learning_rate=args.learning_rate,
            batch_size=args.batch_size,
        )  # fmt: skip
        result = compare(
            selection_dir, [controls_dir], settings=settings, evals=[f"heldout:{args.heldout}"], pool=scored,
            cache_dir=args.cache_dir or out / "cache",
        )  # fmt: skip
    except HFSelectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render_report(result))
    print(f"Report: {selection_dir / 'compare' / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
