"""A record-style train_gpt.py whose export is pgcompress (import mode).

Shaped like the later Parameter Golf records rather than the baseline: the SP8192 tokenizer, a
``Hyperparameters`` object read from the environment and passed whole to ``GPT(h)``, guarded
FlashAttention/Triton imports (a CPU run falls back to SDPA), runtime state that is not in the state
dict (the module global ``BOS_ID``; depth recurrence, switched on part-way through training and kept
on for the final eval), and torchrun-style distribution (NCCL on CUDA, gloo on CPU).

The export section (quantize + serialize + compress, and the load path) is pgcompress: ``export``
packs the trained weights under the 16,000,000-byte budget with this file's bytes counted, and
``load_artifact`` decodes them. In import mode pgcompress is listed in requirements.txt; for the
self-contained mode, examples/self_contained/make_submission.py pastes the generated decoder into
this file (``decode`` is then defined and the load path no longer imports pgcompress).

``prepare_eval(model)`` puts the runtime state on a freshly built model. This script calls it
itself before its final eval, and ``pgc eval --model-code`` / ``pgc pack --model-code`` call it too
(docs/MODEL_CODE.md), so both score the same network.

    DATA_PATH=... TOKENIZER_PATH=.../fineweb_8192_bpe.model python train_gpt.py
    torchrun --nproc_per_node=8 train_gpt.py
    EVAL_ONLY=1 ARTIFACT=final_model.pgc python train_gpt.py      # score an existing artifact
"""

from __future__ import annotations

import glob
import math
import os
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

try:  # FlashAttention 3 on Hopper, as the records use; absent on a CPU machine
    from flash_attn_interface import flash_attn_func
except ImportError:
    flash_attn_func = None
try:  # the records' fused kernels are Triton; nothing here needs it on CPU
    import triton  # noqa: F401
except ImportError:
    triton = None

BOS_ID = None  # the tokenizer's BOS id, set at runtime (set_runtime); positions restart after each BOS
CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain")


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp8192")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_8192_bpe.model")
    train_files = os.environ.get("TRAIN_FILES", os.path.join(data_path, "fineweb_train_*.bin"))
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    seed = int(os.environ.get("SEED", 1337))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 8192))
    num_layers = int(os.environ.get("NUM_LAYERS", 11))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", 4))
    mlp_mult = int(os.environ.get("MLP_MULT", 4))
    rope_base = float(os.environ.get("ROPE_BASE", 10000.0))
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", 30.0))
    recur_layers = tuple(int(i) for i in os.environ.get("RECUR_LAYERS", "3,4,5").split(",") if i)
    recur_start_frac = float(os.environ.get("RECUR_START_FRAC", 0.5))  # fraction of training before looping
    iterations = int(os.environ.get("ITERATIONS", 20000))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 2048))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 786_432))
    lr = float(os.environ.get("LR", 3e-3))
    val_batch_size = int(os.environ.get("VAL_BATCH_SIZE", 524_288))
    val_tokens = int(os.environ.get("VAL_TOKENS", 0))  # 0: the whole validation set
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", 2048))
    pgc_method = os.environ.get("PGC_METHOD", "")  # "" = pgcompress's budget solver, else a method spec
    budget = int(os.environ.get("BUDGET", 16_000_000))
    artifact = os.environ.get("ARTIFACT", "final_model.pgc")
    eval_only = bool(int(os.environ.get("EVAL_ONLY", "0")))


def set_runtime(h: Hyperparameters) -> None:
    """Module globals the forward reads (not in the state dict)."""
    global BOS_ID
    BOS_ID = int(spm.SentencePieceProcessor(model_file=h.tokenizer_path).bos_id())


def prepare_eval(model: nn.Module) -> nn.Module:
    """Runtime state of the trained network: the BOS id, and depth recurrence on (training ends with it)."""
    set_runtime(Hyperparameters())
    model.recur_active = True
    return model


# ----------------------------------------------------------------------------- data


def load_data_shard(file: str) -> torch.Tensor:
    header = np.fromfile(file, dtype="<i4", count=256)
    if header.size != 256 or header[0] != 20240520 or header[1] != 1:
        raise ValueError(f"unexpected shard header in {file}")
    n = int(header[2])
    tokens = np.fromfile(file, dtype="<u2", count=n, offset=256 * 4)
    if tokens.size != n:
        raise ValueError(f"short read in {file}")
    return torch.from_numpy(tokens.astype(np.uint16))


class TokenStream:
    def __init__(self, pattern: str):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"no files match {pattern}")
        self.idx, self.tokens, self.pos = 0, load_data_shard(self.files[0]), 0

    def take(self, n: int) -> torch.Tensor:
        chunks = []
        while n > 0:
            if self.pos >= self.tokens.numel():
                self.idx = (self.idx + 1) % len(self.files)
                self.tokens, self.pos = load_data_shard(self.files[self.idx]), 0
            k = min(n, self.tokens.numel() - self.pos)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return torch.cat(chunks)


def next_batch(stream: TokenStream, h: Hyperparameters, rank: int, world: int, device) -> tuple:
    local = h.train_batch_tokens // world
    chunk = stream.take(local * world + 1)[rank * local : rank * local + local + 1].to(torch.int64)
    x, y = chunk[:-1].reshape(-1, h.train_seq_len), chunk[1:].reshape(-1, h.train_seq_len)
    return x.to(device), y.to(device)


def load_validation_tokens(h: Hyperparameters, seq_len: int) -> torch.Tensor:
    tokens = torch.cat([load_data_shard(f) for f in sorted(glob.glob(h.val_files))])
    if h.val_tokens:
        tokens = tokens[: h.val_tokens + 1]
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    return tokens[: usable + 1]


def build_sentencepiece_luts(sp, vocab_size: int):
    size = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i], piece = True, piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary)


def eval_val(h, model, rank, world, device, val_tokens, luts, seq_len) -> tuple[float, float]:
    """The challenge's eval: VAL_BATCH_SIZE split over ranks and 8 // world micro-steps, float64 sums."""
    grad_accum = 8 // world if 8 % world == 0 else 1
    local_seqs = h.val_batch_size // (world * grad_accum) // seq_len
    total = (val_tokens.numel() - 1) // seq_len
    first, last = total * rank // world, total * (rank + 1) // world
    base, space, boundary = (t.to(device) for t in luts)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, tokens, bytes
    model.eval()
    with torch.inference_mode():
        for s in range(first, last, local_seqs):
            e = min(s + local_seqs, last)
            local = val_tokens[s * seq_len : e * seq_len + 1].to(device=device, dtype=torch.int64)
            x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                loss = model(x, y).detach()
            n = float(y.numel())
            sums[0] += loss.to(torch.float64) * n
            sums[1] += n
            prev, tgt = x.reshape(-1), y.reshape(-1)
            nbytes = base[tgt].to(torch.int16) + (space[tgt] & ~boundary[prev]).to(torch.int16)
            sums[2] += nbytes.to(torch.float64).sum()
    if world > 1:
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    val_loss = float(sums[0]) / float(sums[1])
    return val_loss, (val_loss / math.log(2.0)) * (float(sums[1]) / float(sums[2]))


# ----------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """fp32 weight, cast to the activation dtype at matmul time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


def doc_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] ids -> [B, T] positions counted from the latest BOS (each document starts at 0)."""
    T = input_ids.size(1)
    ar = torch.arange(T, device=input_ids.device).expand_as(input_ids)
    starts = torch.where(input_ids == BOS_ID, ar, torch.zeros_like(ar))
    return ar - torch.cummax(starts, dim=1).values


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    def forward(self, pos: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = pos[:, None, :, None].float() * self.inv_freq.float()  # [B, 1, T, D/2]
        return freqs.cos().to(dtype), freqs.sin().to(dtype)


def rotate(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, h: Hyperparameters):
        super().__init__()
        self.heads, self.kv_heads = h.num_heads, h.num_kv_heads
        self.head_dim = h.model_dim // h.num_heads
        kv_dim = self.kv_heads * self.head_dim
        self.c_q = CastedLinear(h.model_dim, h.model_dim, bias=False)
        self.c_k = CastedLinear(h.model_dim, kv_dim, bias=False)
        self.c_v = CastedLinear(h.model_dim, kv_dim, bias=False)
        self.proj = CastedLinear(h.model_dim, h.model_dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((self.heads,), 1.5))
        self.rotary = Rotary(self.head_dim, h.rope_base)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        cos, sin = self.rotary(pos, q.dtype)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        if flash_attn_func is not None and x.is_cuda:
            y = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
            y = y[0] if isinstance(y, tuple) else y
        else:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        return self.proj(y.reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, h: Hyperparameters):
        super().__init__()
        self.fc = CastedLinear(h.model_dim, h.mlp_mult * h.model_dim, bias=False)
        self.proj = CastedLinear(h.mlp_mult * h.model_dim, h.model_dim, bias=False)

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, h: Hyperparameters):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(), RMSNorm()
        self.attn, self.mlp = CausalSelfAttention(h), MLP(h)
        self.attn_scale = nn.Parameter(torch.ones(h.model_dim))
        self.mlp_scale = nn.Parameter(torch.ones(h.model_dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(h.model_dim), torch.zeros(h.model_dim))))

    def forward(self, x, x0, pos):
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.attn_norm(x), pos)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, h: Hyperparameters):
        super().__init__()
        self.softcap = h.logit_softcap
        self.tok_emb = nn.Embedding(h.vocab_size, h.model_dim)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.blocks = nn.ModuleList(Block(h) for _ in range(h.num_layers))
        self.final_norm = RMSNorm()
        self.recur_layers = tuple(h.recur_layers)
        self.recur_active = False  # runtime switch, not a parameter: set by training and by prepare_eval

    def layer_order(self) -> list[int]:
        order = list(range(len(self.blocks)))
        if self.recur_active and self.recur_layers:
            at = max(self.recur_layers) + 1
            order = order[:at] + list(self.recur_layers) + order[at:]
        return order

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = doc_positions(input_ids)
        x = x0 = F.rms_norm(self.tok_emb(input_ids), (self.tok_emb.embedding_dim,))
        for i in self.layer_order():
            x = self.blocks[i](x, x0, pos)
        logits = F.linear(self.final_norm(x), self.tok_emb.weight.to(x.dtype))
        return self.softcap * torch.tanh(logits / self.softcap)

    def forward(self, input_ids, target_ids):
        logits = self.forward_logits(input_ids)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target_ids.reshape(-1))


def make_model(h: Hyperparameters, device) -> GPT:
    """The reference's dtype rules: bf16 body, fp32 linear weights, fp32 control and low-dim params."""
    model = GPT(h).to(device).bfloat16()
    for m in model.modules():
        if isinstance(m, CastedLinear):
            m.float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or any(s in name for s in CONTROL_TENSOR_NAME_PATTERNS):
                p.data = p.data.float()
    return model


# ----------------------------------------------------------------------------- export (pgcompress)


def export(state_dict: dict, h: Hyperparameters) -> bytes:
    """Pack under the budget with this file's bytes counted (import mode: pgcompress is a requirement)."""
    import pgcompress
    from pgcompress.budget import pack_to_budget
    from pgcompress.quant.calibration import CalibConfig

    if h.pgc_method:
        res = pgcompress.pack_report(state_dict, h.budget, __file__, method=h.pgc_method)
        data, total = res.data, res.total_bytes
    else:  # the solver calibrates through this file's own model (prepare_eval included)
        calib = CalibConfig(selfgen=16, seq_len=min(h.train_seq_len, 512), model_code=__file__)
        sol = pack_to_budget(state_dict, h.budget, __file__, calib, submission="import")
        data, total = sol.data, sol.total_bytes
    Path(h.artifact).write_bytes(data)
    print(f"artifact_method:{h.pgc_method or 'solver'} model_bytes:{len(data)} total_bytes:{total}")
    return data


def load_artifact(data: bytes) -> dict:
    """The roundtrip's load path: the pasted decoder if there is one, else pgcompress."""
    if "decode" in globals():  # self-contained mode: make_submission.py pasted the decoder above main
        return globals()["decode"](data)
    import pgcompress

    return pgcompress.unpack(data)


# ----------------------------------------------------------------------------- main


def main() -> None:
    h = Hyperparameters()
    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", 0)) if distributed else 0
    world = int(os.environ.get("WORLD_SIZE", 1)) if distributed else 1
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() \
        else torch.device("cpu")
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    torch.manual_seed(h.seed)
    sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
    if int(sp.vocab_size()) != h.vocab_size:
        raise ValueError(f"VOCAB_SIZE={h.vocab_size} but {h.tokenizer_path} has {sp.vocab_size()} pieces")
    set_runtime(h)

    if not h.eval_only:
        model = make_model(h, device)
        ddp = nn.parallel.DistributedDataParallel(model) if distributed else model
        opt = torch.optim.Adam(model.parameters(), lr=h.lr, betas=(0.9, 0.95))
        stream = TokenStream(h.train_files)
        t0 = time.perf_counter()
        for step in range(h.iterations):
            if step == int(h.recur_start_frac * h.iterations):
                model.recur_active = True  # depth recurrence for the rest of training, and at eval
            x, y = next_batch(stream, h, rank, world, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                loss = ddp(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if master and (step % 50 == 0 or step == h.iterations - 1):
                print(f"step:{step + 1}/{h.iterations} train_loss:{loss.item():.4f} "
                      f"train_time:{1000 * (time.perf_counter() - t0):.0f}ms", flush=True)
        if master:
            print(f"model_params:{sum(p.numel() for p in model.parameters())}")
            torch.save(model.state_dict(), "final_model.pt")
            export(model.state_dict(), h)
        if distributed:
            dist.barrier()

    # The roundtrip: decode the artifact into a fresh model with the runtime state switched on.
    restored = load_artifact(Path(h.artifact).read_bytes())
    eval_model = make_model(h, device)
    eval_model.load_state_dict(restored, strict=True)
    prepare_eval(eval_model)
    luts = build_sentencepiece_luts(sp, h.vocab_size)
    val_tokens = load_validation_tokens(h, h.eval_seq_len)
    t0 = time.perf_counter()
    val_loss, val_bpb = eval_val(h, eval_model, rank, world, device, val_tokens, luts, h.eval_seq_len)
    if master:
        if h.eval_only:
            print(f"model_params:{sum(p.numel() for p in eval_model.parameters())}")
        # The challenge's log key, kept so the usual greps find it; the method is printed above.
        print(f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
              f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
        print(f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
