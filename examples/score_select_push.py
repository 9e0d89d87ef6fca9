"""Score a pool, select the longest rows, and publish the subset with its dataset card in one commit.

    HF_ENDPOINT=https://huggingface.co HF_TOKEN=hf_... python examples/score_select_push.py me/sharegpt-longest-200

It pushes to the Hub at `HF_ENDPOINT` (the default is the real Hub; the test suite points it at a
loopback fake). Defaults use the embedded ShareGPT pool and SmolLM2 tokenizer; pass your own with
--pool and --tokenizer.
"""

from __future__ import annotations

import argparse

from hf_select import TokenLengthScorer, select
from hf_select.pool import load_pool
from hf_select.push import push_selection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo_id", help="dataset repo to create or update, e.g. me/sharegpt-longest-200")
    parser.add_argument("--pool", default="embedded:sharegpt", help="Hub id, folder or json/jsonl/parquet file")
    parser.add_argument("--tokenizer", default="embedded:smollm2")
    parser.add_argument("--rows", type=int, default=2000, help="use the first N rows of the pool")
    parser.add_argument("--budget", default="200", help="rows, fraction or '1M tokens'")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args()

    pool, source, _ = load_pool(args.pool)
    pool = pool.select(range(min(args.rows, len(pool))))
    scorer = TokenLengthScorer(tokenizer=args.tokenizer)
    scored = pool.map(scorer, batched=True)

    longest = select.top_k(scored, "n_tokens", args.budget, source=source, scorers=[scorer.describe()])
    commit = push_selection(longest.dataset, args.repo_id, longest.record, scores=scored, private=args.private)
    print(f"pushed {len(longest):,} rows to {args.repo_id}: {commit.commit_url}")


if __name__ == "__main__":
    main()
