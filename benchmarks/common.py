"""Shared helpers for benchmarks: machine description and writing results."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        info["device"] = "cpu"
    return info


def write_results(name: str, figures: dict[str, Any], markdown: str) -> Path:
    """Write `results/{name}.json` (figures + command + machine + date) and `results/{name}.md`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine(),
        **figures,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    header = f"Command: `{payload['command']}`  \nDate: {payload['date']}  \nMachine: {payload['machine']}\n\n"
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n", encoding="utf-8")
    return RESULTS / f"{name}.json"


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int | None]:
    """(result, seconds, peak resident bytes above the resident set before; None where the peak cannot be
    reset, since the lifetime maximum would not say what `fn` used)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    except OSError:
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0, None
    before = _status("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, _status("VmHWM") - before
