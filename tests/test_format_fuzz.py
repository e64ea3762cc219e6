"""A small fuzz run in the tests (the harness is tests/fuzz_harness.py; the full run is
``python -m bench.fuzz``), and the replay of the corpus of cases that once failed
(tests/fuzz_corpus/: each crashed or raised a non-FormatError before)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_harness as fuzz
import pgcompress
from conftest import REPO
from pgcompress.errors import FormatError

CORPUS = sorted((REPO / "tests" / "fuzz_corpus").glob("*.bin"))


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return fuzz.seed_artifacts(["int8-ref", "int5-rtn+lqer", "fp16"], ["auto", "bitpack", "rans", "rans-ctx2", "planes+brotli"])


@pytest.fixture(scope="module")
def decoder() -> dict:
    return fuzz.decoder_module()


def outcome(fn, err, data) -> str:
    try:
        fn(data)
        return "decoded"
    except err:
        return "FormatError"


def test_corpus_is_small_and_present():
    assert len(CORPUS) >= 5
    assert all(p.stat().st_size <= 1024 for p in CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_case_is_refused_by_both_readers(path: Path, decoder):
    data = path.read_bytes()
    assert outcome(pgcompress.unpack, FormatError, data) == "FormatError"
    assert outcome(decoder["decode"], decoder["FormatError"], data) == "FormatError"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), depth=st.integers(1, 3), generated=st.booleans())
def test_mutated_or_generated_artifacts_decode_or_raise_format_error(seeds, decoder, seed, depth, generated):
    rng = random.Random(seed)
    if generated:
        data, _ = fuzz.generate(rng)
    else:
        data = rng.choice(seeds)
        for _ in range(depth):
            data, _ = fuzz.mutate(rng, data, seeds)
    outcome(pgcompress.unpack, FormatError, data)
    outcome(decoder["decode"], decoder["FormatError"], data)
