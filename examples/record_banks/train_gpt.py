"""A record-style train_gpt.py whose weights live in 3-D banks, packed by pgcompress's solver.

Several leaderboard records keep every layer's matrices in a few stacked parameters (batched
Newton-Schulz for Muon works on a bank at once): ``qo_bank [2L, d, d]`` (Q and O of every layer),
``kv_bank [2L, kv, d]``, ``mlp_up_bank [L, m*d, d]``, ``mlp_down_bank [L, d, m*d]``, each slice read
by ``F.linear``, and a tied SP8192 embedding. A bank is one tensor in the state dict, but its
slices are different layers: ``pgc pack`` (no ``--method``) gives every slice its own method
(calibration sees each slice as a linear map) and stores the bank as one tensor.

    DATA_PATH=... python train_gpt.py                    # train ITERATIONS steps on CPU or a GPU, pack
    pgc pack final_model.pt --model-code train_gpt.py --budget 16000000 --code train_gpt.py

Small on purpose (no eval loop: ``pgc eval --model-code train_gpt.py`` scores the artifact); shapes
from the environment: NUM_LAYERS, MODEL_DIM, NUM_HEADS, NUM_KV_HEADS, MLP_MULT, VOCAB_SIZE.
"""

from __future__ import annotations

import glob
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "mlp_scale", "q_gain")


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp8192")
    seed = int(os.environ.get("SEED", 1337))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 8192))
    num_layers = int(os.environ.get("NUM_LAYERS", 11))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    num_kv_heads = int(os.environ.get("NUM_KV_HEADS", 4))
    mlp_mult = int(os.environ.get("MLP_MULT", 4))
    logit_softcap = float(os.environ.get("LOGIT_SOFTCAP", 30.0))
    iterations = int(os.environ.get("ITERATIONS", 200))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 256))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 8192))
    lr = float(os.environ.get("LR", 3e-3))
    budget = int(os.environ.get("BUDGET", 16_000_000))


def rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding over the last dim of [B, H, T, D]."""
    T, D = x.size(-2), x.size(-1)
    inv = 1.0 / 10000 ** (torch.arange(0, D, 2, device=x.device).float() / D)
    freqs = torch.arange(T, device=x.device).float()[:, None] * inv
    cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class GPT(nn.Module):
    def __init__(self, h: Hyperparameters):
        super().__init__()
        L, d, m = h.num_layers, h.model_dim, h.mlp_mult
        self.heads, self.kv_heads, self.head_dim = h.num_heads, h.num_kv_heads, d // h.num_heads
        kv = self.kv_heads * self.head_dim
        self.softcap = h.logit_softcap
        self.tok_emb = nn.Embedding(h.vocab_size, d)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.qo_bank = nn.Parameter(torch.randn(2 * L, d, d) / d ** 0.5)  # [Q_0, .., Q_L-1, O_0, .., O_L-1]
        self.kv_bank = nn.Parameter(torch.randn(2 * L, kv, d) / d ** 0.5)
        self.mlp_up_bank = nn.Parameter(torch.randn(L, m * d, d) / d ** 0.5)
        self.mlp_down_bank = nn.Parameter(torch.zeros(L, d, m * d))
        with torch.no_grad():
            self.qo_bank[L:].zero_()  # output projections start at zero, as the records do
        self.attn_scale = nn.Parameter(torch.ones(L, d))
        self.mlp_scale = nn.Parameter(torch.ones(L, d))
        self.q_gain = nn.Parameter(torch.full((L, self.heads), 1.5))

    def attention(self, i: int, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        L = self.mlp_up_bank.shape[0]
        q = F.linear(x, self.qo_bank[i].to(x.dtype)).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(x, self.kv_bank[i].to(x.dtype)).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(x, self.kv_bank[L + i].to(x.dtype)).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate(F.rms_norm(q, (self.head_dim,))), rotate(F.rms_norm(k, (self.head_dim,)))
        q = q * self.q_gain[i].to(q.dtype)[None, :, None, None]
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        return F.linear(y, self.qo_bank[L + i].to(x.dtype))

    def forward(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        x = F.rms_norm(self.tok_emb(input_ids), (self.tok_emb.embedding_dim,))
        for i in range(self.mlp_up_bank.shape[0]):
            x = x + self.attn_scale[i].to(x.dtype) * self.attention(i, F.rms_norm(x, (x.size(-1),)))
            h = torch.relu(F.linear(F.rms_norm(x, (x.size(-1),)), self.mlp_up_bank[i].to(x.dtype))).square()
            x = x + self.mlp_scale[i].to(x.dtype) * F.linear(h, self.mlp_down_bank[i].to(x.dtype))
        logits = F.linear(F.rms_norm(x, (x.size(-1),)), self.tok_emb.weight.to(x.dtype))
        logits = self.softcap * torch.tanh(logits / self.softcap)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target_ids.reshape(-1))


def make_model(h: Hyperparameters, device) -> GPT:
    """bf16 embedding, fp32 banks and control tensors (the reference's dtype rules)."""
    model = GPT(h).to(device)
    model.tok_emb.bfloat16()
    return model


def train_tokens(h: Hyperparameters) -> torch.Tensor:
    files = sorted(glob.glob(os.path.join(h.data_path, "fineweb_train_*.bin")))
    if not files:
        raise FileNotFoundError(f"no fineweb_train_*.bin under {h.data_path}")
    header = np.fromfile(files[0], dtype="<i4", count=256)
    tokens = np.fromfile(files[0], dtype="<u2", count=int(header[2]), offset=256 * 4)
    return torch.from_numpy(tokens.astype(np.int64))


def train(h: Hyperparameters, tokens: torch.Tensor, device="cpu", log=print) -> GPT:
    """ITERATIONS Adam steps on consecutive windows of ``tokens`` (deterministic for a seed)."""
    torch.manual_seed(h.seed)
    model = make_model(h, device)
    opt = torch.optim.Adam(model.parameters(), lr=h.lr, betas=(0.9, 0.95))
    rows = h.train_batch_tokens // h.train_seq_len
    t0 = time.perf_counter()
    for step in range(h.iterations):
        start = (step * h.train_batch_tokens) % (tokens.numel() - h.train_batch_tokens - 1)
        chunk = tokens[start: start + rows * h.train_seq_len + 1].to(device)
        x, y = chunk[:-1].reshape(rows, h.train_seq_len), chunk[1:].reshape(rows, h.train_seq_len)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == h.iterations - 1:
            log(f"step:{step + 1}/{h.iterations} train_loss:{loss.item():.4f} "
                f"train_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    return model


def main() -> None:
    h = Hyperparameters()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = train(h, train_tokens(h), device)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(sd, "final_model.pt")
    from pgcompress.budget import pack_to_budget
    from pgcompress.quant.calibration import CalibConfig

    calib = CalibConfig(selfgen=16, seq_len=min(h.train_seq_len, 512), model_code=__file__)
    sol = pack_to_budget(sd, h.budget, __file__, calib, submission="import")
    with open("final_model.pgc", "wb") as f:
        f.write(sol.data)
    print(f"model_bytes:{len(sol.data)} total_bytes:{sol.total_bytes} headroom:{sol.headroom}")
    for t in sol.tensors:
        print(f"{t.name} {t.method} {t.bits:.3f}")


if __name__ == "__main__":
    main()
