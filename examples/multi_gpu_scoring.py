"""Score a pool with IFD on every GPU of the machine, and resume after a crash for free.

    python examples/multi_gpu_scoring.py --model Qwen/Qwen2-0.5B --pool my_pool.jsonl --out scored

One worker per GPU: `ds.map(scorer, batched=True, with_rank=True, num_proc=n_gpus)` gives each worker
its rank, and the scorer loads the model once on `cuda:{rank}`. hf-select switches `multiprocess` to the
`spawn` start method (a forked worker cannot use CUDA, nor torch's CPU threads once the parent ran a
model). The map writes one cache file per shard and the scorer's fingerprint depends only on its
configuration, so running the same command again after a crash reloads the finished shards and
recomputes only the others.

Without a GPU it runs on the CPU in one process (try `--rows 16 --max-length 512`).
"""

from __future__ import annotations

import argparse

import torch

from hf_select import IFDScorer, select
from hf_select.pool import load_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded:smollm2")
    parser.add_argument("--pool", default="embedded:sharegpt")
    parser.add_argument("--rows", type=int, help="use the first N rows")
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--budget", default="0.1")
    parser.add_argument("--out", default="ifd-scored")
    args = parser.parse_args()

    pool, _, _ = load_pool(args.pool)  # file-backed, so map caches one file per shard
    if args.rows:
        pool = pool.select(range(args.rows))
    n_gpus = torch.cuda.device_count()
    scorer = IFDScorer(model=args.model, max_length=args.max_length)
    scored = pool.map(scorer, batched=True, batch_size=1000, with_rank=True, num_proc=n_gpus or None)
    scored.save_to_disk(args.out)

    usable = sum(1 for v in scored["ifd"] if v <= 1.0)
    print(f"{len(scored):,} rows scored on {n_gpus or 'no'} GPU(s); {usable:,} have IFD <= 1 -> {args.out}")
    if usable:
        best = select.top_k(
            scored, "ifd", min(usable, select.Budget.parse(args.budget).rows(len(scored))), max_value=1.0
        )
        print(f"top IFD (<= 1): {len(best):,} rows, indices sha256 {best.record.indices_sha256[:12]}")


if __name__ == "__main__":
    main()
