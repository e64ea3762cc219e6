"""Glue for ``pgc eval`` / ``pgc compare``: files -> state dicts -> models -> scored results.

Everything that reads a file or picks a device lives here; the loop only sees tensors.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pgcompress.errors import DataError, ModelError
from pgcompress.eval import distributed
from pgcompress.eval.byte_tables import build_byte_tables, load_tokenizer
from pgcompress.eval.loop import LoopConfig, evaluate
from pgcompress.eval.shards import load_val_tokens
from pgcompress.model import load_model
from pgcompress.model.gpt import count_params

DEFAULT_DATA_PATH = "./data/datasets/fineweb10B_sp1024"
DEFAULT_TOKENIZER_PATH = "./data/tokenizers/fineweb_1024_bpe.model"


def default_data_path() -> Path:
    return Path(os.environ.get("DATA_PATH", DEFAULT_DATA_PATH))


def default_tokenizer_path() -> Path:
    return Path(os.environ.get("TOKENIZER_PATH", DEFAULT_TOKENIZER_PATH))


@dataclass
class EvalOptions:
    data_path: Path = field(default_factory=default_data_path)
    tokenizer_path: Path = field(default_factory=default_tokenizer_path)
    seq_len: int = 1024
    batch_tokens: int = 524_288
    max_tokens: int | None = None
    stride: int | None = None
    device: str | None = None  # None: cuda if present, else cpu
    nproc: int = 1  # local processes to spawn; torchrun sets its own world instead
    model_code: Path | None = None
    model_overrides: dict = field(default_factory=dict)
    label: str | None = None  # overrides the label of every evaluated file
    progress: bool = False


@dataclass
class EvalResult:
    path: str
    kind: str  # "artifact" or "checkpoint"
    label: str  # e.g. "int8_ref", "raw"
    val_loss: float
    val_bpb: float
    eval_ms: float
    model_params: int
    artifact_bytes: int
    token_count: int
    byte_count: int
    seq_len: int
    stride: int | None
    device: str
    world_size: int

    @property
    def prefix(self) -> str:
        base = f"final_{self.label}_roundtrip"
        return base + "_sliding_window" if self.stride else base

    def lines(self) -> list[str]:
        """The log lines people grep for, in the reference's exact shapes."""
        stride = f" stride:{self.stride}" if self.stride else ""
        return [
            f"model_params:{self.model_params}",
            f"{self.prefix} val_loss:{self.val_loss:.4f} val_bpb:{self.val_bpb:.4f}{stride} eval_time:{self.eval_ms:.0f}ms",
            f"{self.prefix}_exact val_loss:{self.val_loss:.8f} val_bpb:{self.val_bpb:.8f}",
            f"artifact_bytes:{self.artifact_bytes} artifact_mb:{self.artifact_bytes / 1e6:.6f}",
        ]

    def to_json(self) -> dict:
        return {"name": self.prefix, **asdict(self)}


@dataclass
class Weights:
    state_dict: dict[str, torch.Tensor]
    kind: str
    label: str
    nbytes: int


def clean_label(label: str) -> str:
    """Method spec -> a label fit for a log key: 'int6-gptq' -> 'int6_gptq'."""
    return re.sub(r"[^A-Za-z0-9_]", "_", label)


def load_weights(path: Path, device: torch.device | None = None, progress: bool = False) -> Weights:
    """An artifact (dequantized with unpack, on ``device`` when given: the packed-dequant kernels on
    CUDA) or a checkpoint, with its eval label and file size."""
    from pgcompress import format as fmt
    from pgcompress import load_checkpoint, read_header, unpack

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    if fmt.is_artifact(data):
        label = read_header(data, str(path)).get("label") or "artifact"
        return Weights(unpack(data, str(path), device=device, progress=progress), "artifact", clean_label(label),
                       len(data))
    # The reference's final_model.int8.ptz loads dequantized; keep the reference's own label.
    label = "int8_zlib" if path.suffix == ".ptz" else "raw"
    return Weights(load_checkpoint(path), "checkpoint", label, len(data))


def run(paths: list[Path], opts: EvalOptions) -> list[EvalResult] | None:
    """Evaluate each file on the same tokens. Returns the results on rank 0, None on other ranks."""
    device_kind = distributed.resolve_device(opts.device)
    under_launcher = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if opts.nproc > 1 and not under_launcher:
        return distributed.spawn(opts.nproc, device_kind, evaluate_files, paths, opts, device_kind)
    try:
        return evaluate_files(paths, opts, device_kind)
    finally:
        distributed.shutdown()


def evaluate_files(paths: list[Path], opts: EvalOptions, device_kind: str) -> list[EvalResult] | None:
    ctx = distributed.from_env(device_kind)
    for path in paths:  # before the slow steps: a typo in a path is the commonest mistake
        if not Path(path).is_file():
            raise DataError(f"{path}: {'is a directory, not a file' if Path(path).is_dir() else 'no such file'}")
    sp = load_tokenizer(opts.tokenizer_path)
    tokens = load_val_tokens(opts.data_path, opts.seq_len, opts.max_tokens)  # [usable + 1] uint16
    max_id = int(tokens.numpy().max())
    loop_cfg = LoopConfig(opts.seq_len, opts.batch_tokens, opts.stride, opts.progress and ctx.is_main)
    results = []
    for path in paths:
        weights = load_weights(path, ctx.device if ctx.device.type == "cuda" else None, opts.progress and ctx.is_main)
        model, vocab = load_model(weights.state_dict, opts.model_code, str(path), opts.model_overrides)
        _check_vocab(vocab, int(sp.vocab_size()), max_id, path, opts)
        tables = build_byte_tables(sp, vocab)
        model.to(ctx.device)
        _sync(ctx.device)
        t0 = time.perf_counter()
        r = evaluate(model, tokens, tables, loop_cfg, ctx.device, ctx.rank, ctx.world_size)
        _sync(ctx.device)
        eval_ms = 1000.0 * (time.perf_counter() - t0)
        results.append(EvalResult(
            path=str(path), kind=weights.kind, label=clean_label(opts.label) if opts.label else weights.label,
            val_loss=r.val_loss, val_bpb=r.val_bpb, eval_ms=eval_ms, model_params=count_params(model),
            artifact_bytes=weights.nbytes, token_count=int(r.token_count), byte_count=int(r.byte_count),
            seq_len=opts.seq_len, stride=opts.stride, device=ctx.device.type, world_size=ctx.world_size,
        ))
        del model
    return results if ctx.is_main else None


def _check_vocab(vocab: int | None, sp_vocab: int, max_id: int, path: Path, opts: EvalOptions) -> None:
    if vocab is None:
        raise ModelError(f"--model-code {opts.model_code}: Hyperparameters has no vocab_size")
    # The reference refuses any mismatch: bytes per token are only defined for the tokenizer's ids.
    if vocab != sp_vocab:
        relation = "larger" if vocab > sp_vocab else "smaller"
        raise ModelError(
            f"{path}: model vocab {vocab} is {relation} than tokenizer {opts.tokenizer_path}'s {sp_vocab}; "
            "pass the tokenizer the model was trained with (--tokenizer / TOKENIZER_PATH)"
        )
    if max_id >= vocab:
        raise DataError(
            f"{opts.data_path}: token id {max_id} is outside the model's vocab {vocab}; "
            "the shards were made with another tokenizer"
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
