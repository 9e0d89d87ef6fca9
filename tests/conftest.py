"""Test session set-up. The loopback fake Hub must start before anything imports datasets or
huggingface_hub: both read HF_ENDPOINT (and build module-level clients) at import time."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_hub import fake_hub_fixture, start_session_hub  # noqa: E402, F401

# HF_SELECT_HUB_TESTS=1 runs only the @pytest.mark.hub tests, against the real Hub with the real environment.
HUB_TESTS = os.environ.get("HF_SELECT_HUB_TESTS") == "1"
if not HUB_TESTS:
    start_session_hub()
collect_ignore = ["test_fake_hub.py"] if HUB_TESTS else []  # it starts a fake hub on import

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HUB_TESTS:  # the fake hub cannot start once the clients point at the real Hub
        skip = pytest.mark.skip(reason="HF_SELECT_HUB_TESTS=1: only @pytest.mark.hub tests run (real Hub)")
        for item in items:
            if "hub" not in item.keywords:
                item.add_marker(skip)
