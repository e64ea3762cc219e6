"""The eval loop: batching, sliding-window coverage, and agreement between the two modes."""

from __future__ import annotations

import pytest
import torch

from pgcompress.errors import DataError
from pgcompress.eval.byte_tables import ByteTables
from pgcompress.eval.loop import LoopConfig, evaluate, local_batch_seqs, sliding_windows
from pgcompress.model.gpt import GPT, GPTConfig, apply_reference_dtypes

CPU = torch.device("cpu")


def tiny_model(vocab: int = 50) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, mlp_hidden=64))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.ndim == 1 else 0.0))
    return apply_reference_dtypes(model)


def plain_tables(vocab: int) -> ByteTables:
    # id 0 is a boundary (like BOS); every other id is 1 byte, odd ids carry a leading space.
    base = torch.ones(vocab, dtype=torch.int16)
    base[0] = 0
    space = torch.arange(vocab) % 2 == 1
    boundary = torch.zeros(vocab, dtype=torch.bool)
    boundary[0] = True
    return ByteTables(base, space, boundary)


@pytest.mark.parametrize("n,L,stride", [(64, 16, 4), (100, 16, 16), (16, 16, 8), (1000, 128, 64), (37, 8, 3)])
def test_sliding_windows_cover_each_target_once(n, L, stride):
    seen = torch.zeros(n, dtype=torch.int64)
    for start, offset in sliding_windows(n, L, stride):
        assert 0 <= start and start + L <= n
        seen[start + offset : start + L] += 1
        if start > 0:  # at least L - stride tokens of context for every scored token
            assert offset >= L - stride
    assert seen.eq(1).all()


def test_stride_out_of_range():
    with pytest.raises(DataError, match="--stride"):
        sliding_windows(100, 16, 17)


def test_batch_tokens_too_small():
    with pytest.raises(DataError, match="less than one sequence"):
        local_batch_seqs(8 * 1023, 1024, 1)


def test_standard_mode_independent_of_batch_size():
    model, tables = tiny_model(), plain_tables(50)
    torch.manual_seed(1)
    tokens = torch.randint(0, 50, (6 * 32 + 1,)).to(torch.uint16)
    results = [evaluate(model, tokens, tables, LoopConfig(seq_len=32, batch_tokens=8 * b * 32), CPU) for b in (1, 2, 6)]
    assert all(r.token_count == 6 * 32 and r.byte_count == results[0].byte_count for r in results)
    # fp32 batch means differ in the last bits only
    assert max(r.val_loss for r in results) - min(r.val_loss for r in results) < 1e-5


def test_byte_count_rule_in_loop():
    tables = plain_tables(50)
    tokens = torch.tensor([0, 1, 3, 0, 5, 2, 0, 7, 9], dtype=torch.uint16)  # 8 targets
    r = evaluate(tiny_model(), tokens, tables, LoopConfig(seq_len=4, batch_tokens=8 * 4), CPU)
    # targets 1(after boundary: 1) 3(+space: 2) 0(0) 5(after boundary: 1) 2(1) 0(0) 7(1) 9(+space: 2)
    assert r.byte_count == 8


def test_sliding_with_full_stride_equals_standard():
    model, tables = tiny_model(), plain_tables(50)
    torch.manual_seed(2)
    tokens = torch.randint(0, 50, (4 * 32 + 1,)).to(torch.uint16)
    std = evaluate(model, tokens, tables, LoopConfig(seq_len=32, batch_tokens=8 * 4 * 32), CPU)
    sw = evaluate(model, tokens, tables, LoopConfig(seq_len=32, batch_tokens=8 * 4 * 32, stride=32), CPU)
    assert sw.token_count == std.token_count and sw.byte_count == std.byte_count
    assert abs(sw.val_loss - std.val_loss) < 1e-5


def test_sliding_scores_each_target_with_its_own_window():
    # Independent reference: target j (token j+1) is scored in the window that starts at 0 for
    # j < L, else at min((b + 1) * S, N - L) with b = (j - L) // S: at least L - S tokens of context.
    model, tables = tiny_model(), plain_tables(50)
    torch.manual_seed(3)
    L, S = 32, 8
    tokens = torch.randint(0, 50, (8 * 32 + 1,)).to(torch.uint16)
    n = tokens.numel() - 1
    std = evaluate(model, tokens, tables, LoopConfig(seq_len=L, batch_tokens=8 * 8 * L), CPU)
    sw = evaluate(model, tokens, tables, LoopConfig(seq_len=L, batch_tokens=8 * 8 * L, stride=S), CPU)
    assert sw.token_count == std.token_count == n
    ids = tokens.to(torch.int64)
    nll = []
    with torch.no_grad():
        for j in range(n):
            s = 0 if j < L else min(((j - L) // S + 1) * S, n - L)
            logits = model.forward_logits(ids[s:s + L][None]).float()  # [L, V]
            nll.append(-torch.log_softmax(logits[j - s], dim=-1)[ids[j + 1]].double())
    want = float(torch.stack(nll).mean())
    assert abs(sw.val_loss - want) < 1e-4
    assert abs(std.val_loss - want) > 1e-3  # the standard eval scores with less context: a real difference
