"""Hessian collection (one forward per batch, every layer), tied head, calibration sources, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import reference_like_state_dict
from pgcompress.errors import DataError
from pgcompress.eval.shards import write_shard
from pgcompress.quant import calibration as C
from pgcompress.quant.quantize import context_for, hessians_for


@pytest.fixture(scope="module")
def tiny():
    sd = reference_like_state_dict(seed=1, dim=32, layers=3, vocab=96, heads=4, kv_heads=2)
    return sd, C.calibration_model(sd)


def test_hessians_equal_explicit_inputs_and_one_forward_per_batch(tiny):
    sd, model = tiny
    tokens = torch.randint(0, 96, (5, 12), generator=torch.Generator().manual_seed(0))
    calls = []
    orig = model.forward_logits
    model.forward_logits = lambda x: (calls.append(x.shape[0]), orig(x))[1]
    try:
        H = C.collect_hessians(model, tokens, batch_seqs=2)
    finally:
        del model.forward_logits
    assert calls == [2, 2, 1]  # one pass per batch, all layers at once
    # independent: capture every linear's input over one full forward, sum x x^T in float64
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.setdefault(n, []).append(i[0].reshape(-1, i[0].shape[-1])))
             for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model.forward_logits(tokens)
    for h in hooks:
        h.remove()
    linear_keys = {f"{n}.weight" for n in seen}
    assert set(H) == linear_keys | {"tok_emb.weight"}
    for n, xs in seen.items():
        X = torch.cat(xs).double()
        assert torch.allclose(H[f"{n}.weight"].double(), X.T @ X, rtol=1e-4, atol=1e-4), n


def test_tied_head_hessian_equals_an_untied_copy(tiny):
    sd, model = tiny
    tokens = torch.randint(0, 96, (3, 10), generator=torch.Generator().manual_seed(1))
    untied = C.calibration_model({**sd, "lm_head.weight": sd["tok_emb.weight"].float()})
    H_tied = C.collect_hessians(model, tokens)
    H_untied = C.collect_hessians(untied, tokens)
    assert torch.allclose(H_tied["tok_emb.weight"], H_untied["lm_head.weight"], rtol=1e-4, atol=1e-4)


def test_selfgen_is_seeded_and_starts_with_bos(tiny):
    _, model = tiny
    a = C.selfgen_tokens(model, 3, 9, seed=5, batch_seqs=2)
    b = C.selfgen_tokens(model, 3, 9, seed=5, batch_seqs=2)
    assert a.shape == (3, 9) and torch.equal(a, b) and torch.all(a[:, 0] == C.BOS_ID)
    assert int(a.max()) < 96


def test_shard_windows(tmp_path):
    toks = np.arange(5000, dtype=np.uint16) % 1000
    write_shard(tmp_path / "fineweb_train_000000.bin", toks)
    got = C.shard_tokens(str(tmp_path / "fineweb_train_*.bin"), 4, 100)
    starts = np.linspace(0, 4900, 4).astype(int)
    assert torch.equal(got, torch.from_numpy(np.stack([toks[s:s + 100] for s in starts]).astype(np.int64)))
    with pytest.raises(DataError):
        C.shard_tokens(str(tmp_path / "nothing_*.bin"), 4, 100)


def test_context_only_calibrates_for_hessian_methods(tiny, tmp_path):
    sd, _ = tiny
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(3000, dtype=np.uint16) % 96)
    cfg = C.CalibConfig(shards=str(tmp_path / "*.bin"), seqs=3, seq_len=16)
    assert context_for(sd, "int6-rtn", cfg).hessians == {}
    assert "blocks.0.mlp.fc.weight" in context_for(sd, "int6-rtn,blocks.0.mlp.fc.weight=int6-gptq", cfg).hessians
    assert "tok_emb.weight" in hessians_for(sd, C.CalibConfig(selfgen=2, seq_len=8))


def test_cli_pack_with_calibration(tmp_path, tiny):
    from click.testing import CliRunner

    from pgcompress.cli.main import cli

    sd, _ = tiny
    ckpt = tmp_path / "m.pt"
    big = reference_like_state_dict(seed=2, dim=64, layers=2, vocab=1100, mlp_mult=17)
    torch.save(big, ckpt)
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(4000, dtype=np.uint16) % 1100)
    out = tmp_path / "a.pgc"
    r = CliRunner().invoke(cli, ["pack", str(ckpt), "-o", str(out), "--method", "int5-gptq", "--codec", "zlib",
                                 "--calib-shards", str(tmp_path / "fineweb_train_*.bin"), "--calib-seqs", "3",
                                 "--calib-seq-len", "32", "--json"])
    assert r.exit_code == 0, r.output
    assert "no calibration" not in r.output and out.stat().st_size > 0
    r = CliRunner().invoke(cli, ["pack", str(ckpt), "-o", str(out), "--calib-shards", "x", "--calib-selfgen", "2"])
    assert r.exit_code != 0


def test_shard_windows_span_files_like_a_concatenation(tmp_path):
    """Memory-mapped windows equal the same windows of the concatenated token arrays."""
    import numpy as np

    from pgcompress.eval.shards import write_shard
    from pgcompress.quant.calibration import shard_tokens

    g = np.random.default_rng(0)
    parts = [g.integers(0, 1000, n).astype(np.uint16) for n in (700, 5, 1300)]
    for i, p in enumerate(parts):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", p)
    got = shard_tokens(str(tmp_path / "fineweb_train_*.bin"), 9, 256)
    cat = np.concatenate(parts).astype(np.int64)
    starts = np.linspace(0, cat.size - 256, num=9).astype(np.int64)
    assert np.array_equal(got.numpy(), np.stack([cat[s:s + 256] for s in starts]))
