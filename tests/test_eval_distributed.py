"""1 vs 2 gloo processes on CPU: the all-reduced sums must give the same val_loss / val_bpb."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgcompress.eval.loop import local_batch_seqs, rank_slice
from pgcompress.eval.runner import EvalOptions, run
from pgcompress.eval.shards import read_shard, write_shard
from pgcompress.model.gpt import GPT, GPTConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOKENIZER = DATA / "tokenizers" / "fineweb_1024_bpe.model"
SEQ = 128

pytestmark = pytest.mark.skipif(not TOKENIZER.exists(), reason="shared data not present")


def small_random_checkpoint(path: Path) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2, mlp_hidden=128))
    with torch.no_grad():
        for p in model.parameters():  # non-trivial weights (the training init zeroes projections)
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    (root / "data").mkdir()
    real = read_shard(DATA / "sp1024" / "fineweb_val_000000.bin")
    write_shard(root / "data" / "fineweb_val_000000.bin", real[: 11 * SEQ + 1])
    small_random_checkpoint(root / "model.pt")
    return root


def _opts(root: Path, nproc: int, batch_tokens: int) -> EvalOptions:
    return EvalOptions(data_path=root / "data", tokenizer_path=TOKENIZER, seq_len=SEQ,
                       batch_tokens=batch_tokens, device="cpu", nproc=nproc)


def test_split_follows_reference():
    # rank r takes [total*r//W, total*(r+1)//W); 8 micro-steps in total whatever W divides 8.
    assert [rank_slice(11, r, 2) for r in range(2)] == [(0, 5), (5, 11)]
    assert [rank_slice(7, r, 3) for r in range(3)] == [(0, 2), (2, 4), (4, 7)]
    assert local_batch_seqs(524_288, 1024, 1) == local_batch_seqs(524_288, 1024, 8) == 64


def test_one_vs_two_processes_identical(setup):
    # 8 sequences, 2 per forward: both layouts run the same batches ([0,2) [2,4) | [4,6) [6,8)), so
    # only the float64 all-reduce differs; anything else (wrong split, double counting, a missing
    # reduce) shows far above 1e-9.
    root = setup
    sub = root / "eight"
    (sub / "data").mkdir(parents=True, exist_ok=True)
    write_shard(sub / "data" / "fineweb_val_000000.bin", read_shard(root / "data" / "fineweb_val_000000.bin")[: 8 * SEQ + 1])
    batch = 8 * 2 * SEQ
    (one,) = run([root / "model.pt"], _opts(sub, 1, batch))
    (two,) = run([root / "model.pt"], _opts(sub, 2, batch))
    assert two.world_size == 2 and one.world_size == 1
    assert two.token_count == one.token_count == 8 * SEQ
    assert two.byte_count == one.byte_count
    assert abs(two.val_loss - one.val_loss) < 1e-9
    assert abs(two.val_bpb - one.val_bpb) < 1e-9


def test_uneven_split_agrees_to_fp32_rounding(setup):
    # 11 sequences split 5/6: the per-forward batches differ from the single process's, and the
    # reference accumulates each batch's fp32 *mean* * count, so agreement is only to fp32 rounding.
    root = setup
    (one,) = run([root / "model.pt"], _opts(root, 1, 8 * 4 * SEQ))
    (two,) = run([root / "model.pt"], _opts(root, 2, 8 * 4 * SEQ))
    assert two.token_count == one.token_count == 11 * SEQ
    assert abs(two.val_loss - one.val_loss) < 1e-5
    assert abs(two.val_bpb - one.val_bpb) < 1e-5


def test_error_in_a_child_surfaces_as_its_class(setup, tmp_path):
    from pgcompress.errors import ModelError

    sd = torch.load(setup / "model.pt", weights_only=True)
    del sd["blocks.2.attn.q_gain"]
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="missing blocks.2.attn.q_gain"):
        run([tmp_path / "bad.pt"], _opts(setup, 2, 8 * 2 * SEQ))
