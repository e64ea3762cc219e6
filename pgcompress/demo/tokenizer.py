"""Train a 1024-piece SentencePiece BPE like the challenge's, and encode documents into shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pgcompress.eval.shards import write_shard


def train_tokenizer(docs: list[str], model_prefix: Path, vocab_size: int = 1024, seed_sentences: int = 2_000_000) -> Path:
    """Returns the .model path. Ids as the challenge's tokenizer: pad 0, bos 1, eos 2, unk 3."""
    import sentencepiece as spm

    lines = [line for doc in docs for line in doc.split("\n") if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(model_prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.9995,
        byte_fallback=False,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        input_sentence_size=seed_sentences,
        shuffle_input_sentence=False,  # keep training deterministic
        num_threads=1,  # multi-threaded training can order merges differently
        minloglevel=2,
    )
    return Path(f"{model_prefix}.model")


def encode_documents(sp, docs: list[str]) -> np.ndarray:
    """[n] uint16: each document as BOS + its ids (no EOS), the challenge exporter's layout."""
    bos = sp.bos_id()
    parts = [np.asarray([bos] + ids, dtype=np.uint16) for ids in sp.encode(docs)]
    return np.concatenate(parts)


def write_shards(sp, train_docs: list[str], val_docs: list[str], out_dir: Path) -> dict[str, int]:
    """fineweb_{train,val}_000000.bin in ``out_dir``; returns token counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, docs in (("train", train_docs), ("val", val_docs)):
        tokens = encode_documents(sp, docs)
        write_shard(out_dir / f"fineweb_{split}_000000.bin", tokens)
        counts[split] = int(tokens.size)
    return counts
