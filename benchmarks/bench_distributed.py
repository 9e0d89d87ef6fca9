"""Sharded scoring (issue #13): `ds.map(num_proc=2)` vs Ray with 2 actors vs `--shard i/2` x 2, token length.

The pool is the embedded ShareGPT pool repeated to `--rows` rows (200,000 by default), saved with
`save_to_disk`. Each way runs in its own process tree, started fresh, with its own datasets cache:
  - `ds.map`: `pool.map(TokenLengthScorer, batched=True, num_proc=2)`, as `hf-select score --num-proc 2`
    scores (it writes the whole pool with the new columns to the cache);
  - Ray: `hf-select score POOL --engine ray --actors 2 --scores-only` (starts a local Ray cluster);
  - shards: `hf-select score POOL --shard 0/2 --scores-only` and `--shard 1/2` at the same time.
Every ~0.2 s the tree's processes are read from /proc: CPU time (user + system, per process at its last
reading), peak memory (sum of PSS, shared pages counted once) and bytes written (`write_bytes`). Disk
written is also measured as the bytes of the files each run left (cache, output). The scores of the three
runs are checked equal. Floors: Ray's wall time within 1.25x of `ds.map`'s; sidecars < 5% of the pool.

With `--gpu-ce` (only where a GPU exists): CE with a random-initialised Qwen2-0.5B-shaped model through Ray
(one actor, one GPU) vs `ds.map`, tokens/s and MFU, recorded with the device.

    python benchmarks/bench_distributed.py [--rows 200000] [--batch-size 1000]
    python benchmarks/bench_distributed.py --gpu-ce [--rows 20000] [--max-length 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import machine, write_results

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


# --- process-tree sampling from /proc ---------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(roots: list[int]) -> list[int]:
    tree, found, todo = _children(), [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _read(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, PSS bytes, bytes written) of one process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
        written = 0
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    written = int(line.split()[1])
        return cpu, pss, written
    except (OSError, IndexError, ValueError):
        return None


class TreeSampler:
    """Samples the process trees under `roots` until stopped."""

    def __init__(self, roots: list[int], every: float = 0.2) -> None:
        self.roots, self.every = roots, every
        self.cpu: dict[int, float] = {}
        self.written: dict[int, int] = {}
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pss = 0
            for pid in _descendants(self.roots):
                got = _read(pid)
                if got is not None:
                    self.cpu[pid], self.written[pid] = got[0], got[2]
                    pss += got[1]
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"cpu_s": sum(self.cpu.values()), "peak_pss_bytes": self.peak_pss,
                "io_write_bytes": sum(self.written.values())}  # fmt: skip


def du(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_tree(commands: list[list[str]], env: dict[str, str], watch: list[Path]) -> dict[str, Any]:
    """Run `commands` at once; wall time, the trees' CPU / memory / writes, and the bytes the files in
    `watch` grew by."""
    before = sum(du(p) for p in watch)
    t0 = time.perf_counter()
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = [subprocess.Popen(c, env=env, **pipe) for c in commands]
    sampler = TreeSampler([p.pid for p in procs])
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    figures = sampler.stop()
    for proc, out in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"{proc.args} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"wall_s": wall, **figures, "files_written_bytes": sum(du(p) for p in watch) - before, "log": outputs}


# --- the CPU comparison ---------------------------------------------------------------------------
DSMAP = """
import sys, numpy as np
from datasets import load_from_disk
from hf_select import TokenLengthScorer
pool = load_from_disk(sys.argv[1])
scored = pool.map(TokenLengthScorer(tokenizer=sys.argv[2]), batched=True, num_proc=int(sys.argv[3]),
                  batch_size=int(sys.argv[4]))
np.save(sys.argv[5], np.asarray(scored["n_tokens"], dtype=np.float64))
"""


def build_pool(rows: int, folder: Path) -> Path:
    from datasets import concatenate_datasets

    from hf_select import embedded
    from hf_select.pool import load_pool

    base = load_pool(embedded.SHAREGPT).dataset
    repeats = -(-rows // len(base))
    pool = concatenate_datasets([base] * repeats).select(range(rows))
    pool.save_to_disk(str(folder / "pool"))
    return folder / "pool"


def cpu_comparison(args: argparse.Namespace) -> None:
    import numpy as np

    from hf_select import embedded
    from hf_select.distributed.merge import read_scores

    work = Path(tempfile.mkdtemp(prefix="bench-distributed-", dir=args.workdir))
    args.load_at_start = os.getloadavg()[0]
    try:
        pool = build_pool(args.rows, work)
        pool_bytes = du(pool)
        tokenizer = str(embedded.smollm2_path())
        cli = [sys.executable, "-m", "hf_select", "score", str(pool), "--method", "token-length",
               "--tokenizer", tokenizer, "--batch-size", str(args.batch_size), "--quiet"]  # fmt: skip
        results: dict[str, Any] = {}
        for name in args.ways:
            cache = work / f"cache-{name}"
            env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "RAY_USAGE_STATS_ENABLED": "0"}
            out = work / f"out-{name}"
            if name == "dsmap":
                commands = [[sys.executable, "-c", DSMAP, str(pool), tokenizer, "2", str(args.batch_size),
                             str(work / "dsmap.npy")]]  # fmt: skip
            elif name == "ray":
                commands = [[*cli, "--engine", "ray", "--actors", "2", "--scores-only", "-o", str(out)]]
            else:
                commands = [[*cli, "--shard", f"{i}/2", "--scores-only", "-o", str(out)] for i in range(2)]
            print(f"{name}: running ...", flush=True)
            figures = run_tree(commands, env, [cache, out, pool])
            figures["output_bytes"] = du(out)
            results[name] = {k: v for k, v in figures.items() if k != "log"}
            print(f"{name}: {json.dumps(results[name])}", flush=True)
            for f in list(pool.glob("cache-*.arrow")):  # ds.map's cache files beside a save_to_disk pool
                f.unlink()
        scores = {"dsmap": np.load(work / "dsmap.npy")} if "dsmap" in results else {}
        for name in ("ray", "shards"):
            if name in results:
                table = read_scores(work / f"out-{name}").table
                scores[name] = table.column("n_tokens").to_numpy(zero_copy_only=False)
        values = list(scores.values())
        same = all(np.array_equal(values[0], v, equal_nan=True) for v in values[1:])
        report(args, pool_bytes, results, same)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, pool_bytes: int, results: dict[str, Any], same: bool) -> None:
    mib = 1 << 20
    lines = [
        f"Token length (embedded SmolLM2 tokenizer), {args.rows:,} rows (the embedded ShareGPT pool repeated), "
        f"batch size {args.batch_size}; pool on disk {pool_bytes / mib:,.0f} MiB; load average at the start "
        f"{args.load_at_start:.1f}, at the end {os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores.",
        "",
        "| way | wall s | CPU s | peak PSS MiB | files written MiB | /proc write_bytes MiB | output MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"dsmap": "`ds.map(num_proc=2)`", "ray": "Ray, 2 actors", "shards": "`--shard i/2` x 2"}
    for name, r in results.items():
        lines.append(
            f"| {names[name]} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_pss_bytes'] / mib:,.0f} | "
            f"{r['files_written_bytes'] / mib:,.1f} | {r['io_write_bytes'] / mib:,.1f} | "
            f"{r['output_bytes'] / mib:,.2f} |"
        )
    floors: dict[str, Any] = {"scores_identical": same}
    if "dsmap" in results and "ray" in results:
        floors["ray_over_dsmap_wall"] = results["ray"]["wall_s"] / results["dsmap"]["wall_s"]
    for name in ("ray", "shards"):
        if name in results:
            floors[f"{name}_sidecars_over_pool"] = results[name]["output_bytes"] / pool_bytes
    lines += ["", f"Scores identical across the ways: {same}."]
    if "ray_over_dsmap_wall" in floors:
        lines.append(f"Ray / ds.map wall time: {floors['ray_over_dsmap_wall']:.2f}x (floor: <= 1.25x).")
    for name in ("ray", "shards"):
        if f"{name}_sidecars_over_pool" in floors:
            share = 100 * floors[f"{name}_sidecars_over_pool"]
            lines.append(f"{name} sidecars / pool on disk: {share:.2f}% (floor: < 5%).")
    markdown = "\n".join(lines)
    print(markdown)
    figures = {"rows": args.rows, "batch_size": args.batch_size, "pool_bytes": pool_bytes, "results": results,
               "floors": floors, "load_average": os.getloadavg()}  # fmt: skip
    write_results(f"distributed_{args.rows}", figures, markdown)


# --- the GPU comparison ----------------------------------------------------------------------------
def gpu_ce(args: argparse.Namespace) -> None:
    """CE with a random-initialised Qwen2-0.5B-shaped model: `ds.map` on the GPU vs Ray with one GPU actor."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu-ce needs a GPU")
    import ray
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from hf_select import embedded, progress
    from hf_select.distributed.merge import read_scores
    from hf_select.distributed.ray_engine import score_with_ray
    from hf_select.pool import load_pool
    from hf_select.scorers import CrossEntropyScorer

    work = Path(tempfile.mkdtemp(prefix="bench-distributed-gpu-", dir=args.workdir))
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    tokenizer = AutoTokenizer.from_pretrained(str(embedded.smollm2_path()))  # ids < 49,152 < the vocab
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    n_params = sum(p.numel() for p in model.parameters())
    del model
    pool, source, _ = load_pool(embedded.SHAREGPT, limit=args.rows)
    scorer = CrossEntropyScorer(model=str(work / "model"), max_length=args.max_length)
    tokens = [0]
    stop = progress.listen(lambda step: tokens.__setitem__(0, tokens[0] + step.tokens))
    t0 = time.perf_counter()
    reference = pool.map(scorer, batched=True, batch_size=args.batch_size)
    dsmap_s, dsmap_tokens = time.perf_counter() - t0, tokens[0]
    stop()
    ray.init(num_gpus=1, include_dashboard=False)
    t0 = time.perf_counter()
    score_with_ray(scorer, pool, work / "ray", source=source, batch_size=args.batch_size, actors=1)
    ray_s = time.perf_counter() - t0
    ray.shutdown()
    import numpy as np

    ray_ce = read_scores(work / "ray").table.column("ce").to_numpy(zero_copy_only=False)
    same = np.array_equal(np.asarray(reference["ce"], dtype=np.float64), ray_ce, equal_nan=True)
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}
    name = torch.cuda.get_device_name(0)
    flops = next((v for k, v in peak.items() if k in name), None)
    rows = []
    for way, seconds in (("ds.map", dsmap_s), ("Ray, 1 GPU actor", ray_s)):
        rate = dsmap_tokens / seconds
        mfu = 2 * n_params * rate / flops if flops else None
        rows.append({"way": way, "seconds": seconds, "tokens_per_s": rate, "mfu": mfu})
    lines = [f"CE, random-initialised Qwen2-0.5B shape ({n_params / 1e6:.0f}M parameters), {args.rows:,} rows, "
             f"max length {args.max_length}, on {name} (bf16 peak {flops})", "",
             "| way | s | tokens/s | MFU (2 N flops per token) |", "|---|---|---|---|"]  # fmt: skip
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        lines.append(f"| {r['way']} | {r['seconds']:.1f} | {r['tokens_per_s']:,.0f} | {mfu} |")
    lines.append(f"\nScores identical: {same}.")
    markdown = "\n".join(lines)
    print(markdown)
    write_results(f"distributed_gpu_ce_{args.rows}", {"rows": rows, "scores_identical": same,
                  "device": name, "machine": machine()}, markdown)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--ways", nargs="+", default=["dsmap", "ray", "shards"], choices=["dsmap", "ray", "shards"])
    parser.add_argument("--workdir", help="where the pool and outputs go (default: the temporary folder)")
    parser.add_argument("--gpu-ce", action="store_true", help="the GPU comparison (CE, Qwen2-0.5B shape)")
    parser.add_argument("--max-length", type=int, default=2048, help="--gpu-ce: tokens per row at most")
    args = parser.parse_args()
    if args.gpu_ce:
        gpu_ce(args)
    else:
        cpu_comparison(args)


if __name__ == "__main__":
    main()
