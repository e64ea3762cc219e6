"""Bytes per token and bpb against an independent per-token re-implementation, on real data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from pgcompress.eval.byte_tables import build_byte_tables, loss_and_bpb
from pgcompress.eval.loop import LoopConfig, evaluate
from pgcompress.eval.shards import load_val_tokens, read_shard

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = [
    ("sp1024", DATA / "tokenizers" / "fineweb_1024_bpe.model"),
    ("sp8192", DATA / "tokenizers" / "fineweb_8192_bpe.model"),
]

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared data not present")


def python_bytes(sp, tokens: np.ndarray) -> int:
    """The spec's byte rule as a plain loop over pieces (written independently of the library)."""
    pieces = [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    special = [sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) for i in range(sp.vocab_size())]
    total = 0
    ids = tokens.tolist()
    for prev, tgt in zip(ids[:-1], ids[1:]):
        if special[tgt]:
            continue
        piece = pieces[tgt]
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">") and sp.is_byte(tgt):
            total += 1
            continue
        if piece[0] == "\u2581":
            total += len(piece[1:].encode("utf-8")) + (0 if special[prev] else 1)
        else:
            total += len(piece.encode("utf-8"))
    return total


class UniformModel(torch.nn.Module):
    """Scores every token ln(V) exactly (float64), so bpb = log2(V) * tokens / bytes."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x, y):
        return torch.tensor(math.log(self.vocab), dtype=torch.float64)

    def forward_logits(self, x):
        return torch.zeros(x.numel(), self.vocab)


@pytest.mark.parametrize("shard_dir,tokenizer", CASES)
def test_bpb_matches_python_loop_on_full_shard(shard_dir, tokenizer):
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    V = sp.vocab_size()
    tokens = load_val_tokens(DATA / shard_dir, 1024)  # [usable + 1]
    expected_bytes = python_bytes(sp, tokens.numpy())
    n = tokens.numel() - 1
    expected_bpb = math.log2(V) * n / expected_bytes

    r = evaluate(UniformModel(V), tokens, build_byte_tables(sp, V), LoopConfig(), torch.device("cpu"))
    assert r.token_count == n
    assert r.byte_count == expected_bytes
    assert abs(r.val_loss - math.log(V)) < 1e-9
    assert abs(r.val_bpb - expected_bpb) < 1e-9


@pytest.mark.parametrize("shard_dir,tokenizer", CASES)
def test_sliding_window_scores_every_token_once(shard_dir, tokenizer):
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    V = sp.vocab_size()
    tokens = load_val_tokens(DATA / shard_dir, 256, max_tokens=20_000)
    cfg = LoopConfig(seq_len=256, batch_tokens=8 * 16 * 256, stride=64)
    r = evaluate(UniformModel(V), tokens, build_byte_tables(sp, V), cfg, torch.device("cpu"))
    # Zero logits: each token's fp32 cross-entropy is float32(ln V); every target once, same bytes.
    assert r.token_count == tokens.numel() - 1
    assert r.byte_count == python_bytes(sp, tokens.numpy())
    assert abs(r.val_loss - float(np.float32(math.log(V)))) < 1e-9


@pytest.mark.parametrize("shard_dir,tokenizer", CASES)
def test_document_bytes_equal_decoded_text(shard_dir, tokenizer):
    # A cross-check from outside the rule: per BOS-delimited document, the counted bytes equal the
    # UTF-8 length of the text sentencepiece decodes (which drops the first piece's leading space).
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    tables = build_byte_tables(sp, sp.vocab_size())
    ids = read_shard(DATA / shard_dir / "fineweb_val_000000.bin").astype(np.int64)
    starts = np.flatnonzero(ids == sp.bos_id())
    assert starts[0] == 0 and len(starts) > 100
    for a, b in zip(starts[:40], starts[1:41]):
        doc = torch.from_numpy(ids[a:b])
        counted = tables.count_bytes(doc[:-1], doc[1:]).item()
        assert counted == len(sp.decode(doc[1:].tolist()).encode("utf-8"))


def test_table_size_and_boundaries():
    sp = spm.SentencePieceProcessor(model_file=str(CASES[0][1]))
    t = build_byte_tables(sp, 1100)  # a model vocab past the tokenizer's
    assert t.base_bytes.shape == (1100,) and t.base_bytes.dtype == torch.int16
    assert bool(t.is_boundary[1024:].all()) and int(t.base_bytes[1024:].sum()) == 0
    for special in (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()):
        assert bool(t.is_boundary[special]) and int(t.base_bytes[special]) == 0
    sp8 = spm.SentencePieceProcessor(model_file=str(CASES[1][1]))
    t8 = build_byte_tables(sp8, sp8.vocab_size())
    byte_ids = [i for i in range(sp8.vocab_size()) if sp8.is_byte(i)]
    assert len(byte_ids) == 256 and all(int(t8.base_bytes[i]) == 1 for i in byte_ids)


def test_loss_and_bpb_formula():
    loss, bpb = loss_and_bpb(300.0, 100.0, 250.0)
    assert loss == 3.0 and abs(bpb - 3.0 / math.log(2) * 100 / 250) < 1e-15
