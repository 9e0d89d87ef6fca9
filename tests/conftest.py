"""Test session set-up. The loopback fake Hub must start before anything imports datasets or
huggingface_hub: both read HF_ENDPOINT (and build module-level clients) at import time."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_hub import fake_hub_fixture, start_session_hub  # noqa: E402, F401

start_session_hub()

import pytest  # noqa: E402
from tiny_model import build_tiny_model, build_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny byte-level BPE with a ChatML chat template, saved with `save_pretrained`."""
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: str) -> str:
    """A seeded 2-layer Llama with the tiny tokenizer, saved with `save_pretrained`."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), tiny_tokenizer)
