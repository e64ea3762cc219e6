"""``pgc demo`` cached rerun time (was a < 30 s assertion in tests/test_demo.py).

Runs the demo with tiny settings twice in a fresh cache and times the second (cached) run.

    python -m bench.demo_cache   -> bench/results/demo_cache.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.machine import machine_description

from pgcompress.demo.run import DemoConfig, run_demo
from pgcompress.demo.train import TrainConfig


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    machine = machine_description()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DemoConfig(train=TrainConfig(num_layers=2, model_dim=64, num_heads=1, num_kv_heads=1, seq_len=128,
                                           train_steps=3), max_tokens=4096)
        cfg.cache_dir = Path(tmp)
        t0 = time.perf_counter()
        run_demo(cfg, log=lambda m: None, progress=False)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = run_demo(cfg, log=lambda m: None, progress=False)
        second = time.perf_counter() - t0
    assert report.cached == {"data": True, "model": True}
    text = (f"# pgc demo: cold vs cached run\n\nMachine: {machine}.\n\nTiny settings (2x64, 3 steps, 4,096 tokens): "
            f"first run {first:.1f} s, cached rerun {second:.1f} s (the old test asserted < 30 s).\n")
    out = Path(__file__).resolve().parent / "results" / "demo_cache.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
