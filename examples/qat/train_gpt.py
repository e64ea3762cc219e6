"""The baseline train_gpt.py's structure with quantization-aware training and pgcompress's export.

Same sections as the challenge's reference script (Hyperparameters, tokenizer byte tables, eval_val,
data loading, CastedLinear + GPT with the reference's tensor names, training loop, final roundtrip),
with two changes, marked ``# pgcompress``:
1. right after the model is built in its dtypes, ``prepare_qat(base_model, QAT_METHOD)`` makes every
   linear (and the tied embedding) train through the exact weights the artifact will reconstruct;
2. the int8 + zlib export and its load path are replaced by ``pgcompress.pack`` with the same method
   spec and ``pgcompress.unpack``; the roundtrip is scored and printed in the reference's log lines.

Because the fake-quant forward equals what pack -> unpack gives, bit for bit, the QAT model scored
before export and the decoded artifact scored after it print the same val_bpb (``qat_fakequant``
vs ``final_int8_zlib_roundtrip``). The artifact uses the reference architecture, so ``pgc eval``
scores it with its built-in model, no --model-code needed.

    DATA_PATH=data/datasets/fineweb10B_sp1024 TOKENIZER_PATH=data/tokenizers/fineweb_1024_bpe.model \\
        python train_gpt.py
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
import torch.nn.functional as F
from torch import nn

import pgcompress  # pgcompress: listed in the records folder's requirements.txt
from pgcompress.qat import prepare_qat

CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    seed = int(os.environ.get("SEED", 1337))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    num_layers = int(os.environ.get("NUM_LAYERS", 9))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", 4))
    mlp_mult = int(os.environ.get("MLP_MULT", 2))
    rope_base = float(os.environ.get("ROPE_BASE", 10000.0))
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", 30.0))
    iterations = int(os.environ.get("ITERATIONS", 20000))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 1024))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 524_288))
    lr = float(os.environ.get("LR", 3e-3))
    val_batch_size = int(os.environ.get("VAL_BATCH_SIZE", 524_288))
    val_tokens = int(os.environ.get("VAL_TOKENS", 0))  # 0: all of them
    qat_method = os.environ.get("QAT_METHOD", "int6-sdclip")  # pgcompress: the spec QAT and pack share
    budget = int(os.environ.get("BUDGET", 16_000_000))


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


def load_data_shard(file: str) -> torch.Tensor:
    header = np.fromfile(file, dtype="<i4", count=256)
    if header.size != 256 or header[0] != 20240520 or header[1] != 1:
        raise ValueError(f"unexpected shard header in {file}")
    tokens = np.fromfile(file, dtype="<u2", count=int(header[2]), offset=256 * 4)
    return torch.from_numpy(tokens.astype(np.uint16))


def eval_val(h, model, device, val_tokens, luts) -> tuple[float, float]:
    """One process: VAL_BATCH_SIZE // 8 tokens per forward (8 micro-steps), float64 sums."""
    seq_len = h.train_seq_len
    local_seqs = h.val_batch_size // 8 // seq_len
    total = (val_tokens.numel() - 1) // seq_len
    base, space, boundary = luts
    loss_sum = token_count = byte_count = torch.zeros((), dtype=torch.float64)
    model.eval()
    with torch.inference_mode():
        for s in range(0, total, local_seqs):
            e = min(s + local_seqs, total)
            local = val_tokens[s * seq_len : e * seq_len + 1].to(device=device, dtype=torch.int64)
            x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                loss = model(x, y).detach()
            n = float(y.numel())
            loss_sum = loss_sum + loss.to(torch.float64) * n
            token_count = token_count + n
            prev, tgt = x.reshape(-1), y.reshape(-1)
            nbytes = base[tgt].to(torch.int16) + (space[tgt] & ~boundary[prev]).to(torch.int16)
            byte_count = byte_count + nbytes.to(torch.float64).sum()
    model.train()
    val_loss = float(loss_sum) / float(token_count)
    return val_loss, (val_loss / math.log(2.0)) * (float(token_count) / float(byte_count))


class CastedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)),
                             persistent=False)

    def forward(self, seq_len: int, device, dtype):
        t = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
        freqs = torch.outer(t, self.inv_freq.to(device))
        return freqs.cos()[None, None].to(dtype), freqs.sin()[None, None].to(dtype)


def apply_rotary_emb(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, num_heads, num_kv_heads, rope_base):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.q_gain = nn.Parameter(torch.full((num_heads,), 1.5))
        self.rotary = Rotary(self.head_dim, rope_base)

    def forward(self, x):
        B, T, C = x.shape
        q = self.c_q(x).reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        cos, sin = self.rotary(T, x.device, q.dtype)
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.proj(y.transpose(1, 2).contiguous().reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim, mlp_mult):
        super().__init__()
        self.fc = CastedLinear(dim, mlp_mult * dim, bias=False)
        self.proj = CastedLinear(mlp_mult * dim, dim, bias=False)

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim, num_heads, num_kv_heads, mlp_mult, rope_base):
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, rope_base)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x, x0):
        mix = self.resid_mix.to(x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        x = x + self.attn_scale.to(x.dtype)[None, None, :] * self.attn(F.rms_norm(x, (x.size(-1),)))
        return x + self.mlp_scale.to(x.dtype)[None, None, :] * self.mlp(F.rms_norm(x, (x.size(-1),)))


class GPT(nn.Module):
    def __init__(self, vocab_size, num_layers, model_dim, num_heads, num_kv_heads, mlp_mult, rope_base,
                 logit_softcap):
        super().__init__()
        self.logit_softcap = logit_softcap
        self.num_encoder_layers = num_layers // 2
        self.num_decoder_layers = num_layers - self.num_encoder_layers
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder_layers, self.num_decoder_layers), model_dim))
        self.blocks = nn.ModuleList(Block(model_dim, num_heads, num_kv_heads, mlp_mult, rope_base)
                                    for _ in range(num_layers))
        for b in self.blocks:
            nn.init.zeros_(b.attn.proj.weight)
            nn.init.zeros_(b.mlp.proj.weight)

    def forward(self, input_ids, target_ids):
        x = F.rms_norm(self.tok_emb(input_ids), (self.tok_emb.embedding_dim,))
        x0, skips = x, []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype)[None, None, :] * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0)
        x = F.rms_norm(x, (x.size(-1),)).reshape(-1, x.size(-1))
        logits = F.linear(x, self.tok_emb.weight)
        logits = self.logit_softcap * torch.tanh(logits / self.logit_softcap)
        return F.cross_entropy(logits.float(), target_ids.reshape(-1), reduction="mean")


def build_model(h: Hyperparameters, device) -> GPT:
    """The reference's dtypes: bf16 body, fp32 CastedLinear weights, fp32 control and low-dim params."""
    model = GPT(h.vocab_size, h.num_layers, h.model_dim, h.num_heads, h.num_kv_heads, h.mlp_mult, h.rope_base,
                h.logit_softcap).to(device).bfloat16()
    for m in model.modules():
        if isinstance(m, CastedLinear):
            m.float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or any(s in name for s in CONTROL_TENSOR_NAME_PATTERNS):
                p.data = p.data.float()
    return model


def main() -> None:
    h = Hyperparameters()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(h.seed)
    sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
    luts = tuple(t.to(device) for t in build_sentencepiece_luts(sp, h.vocab_size))
    val_tokens = torch.cat([load_data_shard(f) for f in sorted(glob.glob(h.val_files))])
    if h.val_tokens:
        val_tokens = val_tokens[: h.val_tokens + 1]
    val_tokens = val_tokens[: ((val_tokens.numel() - 1) // h.train_seq_len) * h.train_seq_len + 1]
    train_tokens = torch.cat([load_data_shard(f) for f in sorted(glob.glob(h.train_files))])

    base_model = build_model(h, device)
    # pgcompress: before torch.compile and the optimizers (built from parameters(), which still lists the
    # embedding's parameter; embeddings=True also fake-quantizes the tied embedding and so the head)
    qat_plan = prepare_qat(base_model, h.qat_method, embeddings=True)
    print(f"qat:{h.qat_method} fake-quantized tensors:{len(qat_plan)}")
    model = torch.compile(base_model, dynamic=False) if device.type == "cuda" else base_model
    opt = torch.optim.Adam(base_model.parameters(), lr=h.lr, betas=(0.9, 0.95))
    print(f"model_params:{sum(p.numel() for p in base_model.parameters())}")
    t0, pos = time.perf_counter(), 0
    for step in range(h.iterations):
        if pos + h.train_batch_tokens + 1 > train_tokens.numel():
            pos = 0
        chunk = train_tokens[pos : pos + h.train_batch_tokens + 1].to(device=device, dtype=torch.int64)
        pos += h.train_batch_tokens
        x, y = chunk[:-1].reshape(-1, h.train_seq_len), chunk[1:].reshape(-1, h.train_seq_len)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == h.iterations - 1:
            print(f"step:{step + 1}/{h.iterations} train_loss:{loss.item():.4f} "
                  f"train_time:{1000 * (time.perf_counter() - t0):.0f}ms", flush=True)

    qat_loss, qat_bpb = eval_val(h, base_model, device, val_tokens, luts)
    print(f"qat_fakequant_exact val_loss:{qat_loss:.8f} val_bpb:{qat_bpb:.8f}")

    # pgcompress: the export (was quantize_state_dict_int8 + torch.save + zlib) with QAT's own spec.
    state_dict = base_model.state_dict()  # the plain parameters: QAT leaves names and tensors alone
    torch.save(state_dict, "final_model.pt")
    result = pgcompress.pack_report(state_dict, h.budget, __file__, method=h.qat_method)
    Path("final_model.pgc").write_bytes(result.data)
    print(f"Serialized model pgcompress {h.qat_method}: {result.model_bytes} bytes")
    print(f"Total submission size: {result.total_bytes} bytes (code {result.code_bytes})")

    # pgcompress: the load path (was zlib.decompress + torch.load + dequantize_state_dict_int8).
    restored = pgcompress.unpack(Path("final_model.pgc").read_bytes())
    eval_model = build_model(h, device)  # no QAT: the decoded weights are what the grader runs
    eval_model.load_state_dict(restored, strict=True)
    t0 = time.perf_counter()
    val_loss, val_bpb = eval_val(h, eval_model, device, val_tokens, luts)
    print(f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
          f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    print(f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")


if __name__ == "__main__":
    main()
