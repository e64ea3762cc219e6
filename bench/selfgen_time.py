"""Self-generated calibration through --model-code: time before (every token re-runs its whole
prefix, the parent commit's way) and after (a sliding window, pgcompress.quant.selfgen), whether
the tokens agree, the ETA's error, and what the window does to the calibration Hessians.

A. Timing. A record-shaped user model (3-D weight banks for Q/K/V/O and the MLP, GQA, rotary
   positions restarting at each BOS, relu^2 MLP, tied SP8192 embedding, a loss-only forward whose
   logits are caught at F.cross_entropy), written as a train_gpt.py and built through the
   --model-code loader, weights drawn at random with trained-like spreads. Scaled down to fit a
   shared 2-core CPU: 4 layers x 256 and n x T = 8 x 128 tokens with a 16-token window (the
   product's default is 32 x 1024 with a 128-token window: the same T / window ratio of 8).
   The ETA is read off the progress lines a log gets (stderr not a terminal), at the first line
   past 10% of the tokens, against the time the run actually still took.
B. Hessian quality. The shared trained checkpoint (reference GPT, 9 x 512, SP1024, trained on
   seq_len 1024, so its context matters) run as a user model would be: the same n x T, windowed
   sampling against full-prefix sampling (KV-cached, seed A and seed B). Per linear: relative
   Frobenius difference of the Hessians from full-prefix seed A, and the Hessian-weighted int6
   GPTQ error tr(D H_A D^T) of GPTQ run with each Hessian, relative to GPTQ run with H_A itself.

    python -m bench.selfgen_time [--seqs 8] [--seq-len 128] [--window 16] [--skip-hessians]
        -> bench/results/selfgen_time.{md,json}
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import pgcompress.progress as prog
from bench.machine import machine_description
from pgcompress.quant.base import QuantContext
from pgcompress.quant.calib_stats import collect_stats
from pgcompress.quant.calibration import calibration_model
from pgcompress.quant.gptq import hessian_error
from pgcompress.quant.selfgen import context_lengths, probe_cost, selfgen_tokens
from pgcompress.registry import get_method

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO.parent / "shared" / "data" / "checkpoints" / "ref_sp1024_9x512.pt"
GPTQ_BLOCKS = ("blocks.0.", "blocks.4.", "blocks.8.")  # GPTQ errors on these blocks' linears (time)
RESULTS = REPO / "bench" / "results"

RECORD_SCRIPT = '''
"""A record-shaped model with 3-D weight banks (bench/selfgen_time.py writes this file)."""
import torch
import torch.nn.functional as F
from torch import nn

BOS_ID = 1


class Hyperparameters:
    vocab_size = {vocab}
    num_layers = {layers}
    model_dim = {dim}
    num_heads = {heads}
    num_kv_heads = {kv_heads}
    mlp_mult = 3
    logit_softcap = 30.0


def rotate(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        L, d, hd = h.num_layers, h.model_dim, h.model_dim // h.num_heads
        self.h, self.hd = h, hd
        self.tok_emb = nn.Embedding(h.vocab_size, d)
        self.qo_bank = nn.Parameter(torch.zeros(2 * L, d, d))
        self.kv_bank = nn.Parameter(torch.zeros(2 * L, h.num_kv_heads * hd, d))
        self.mlp_up_bank = nn.Parameter(torch.zeros(L, h.mlp_mult * d, d))
        self.mlp_down_bank = nn.Parameter(torch.zeros(L, d, h.mlp_mult * d))
        self.attn_scale = nn.Parameter(torch.ones(L, d))
        self.mlp_scale = nn.Parameter(torch.ones(L, d))
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd), persistent=False)

    def forward(self, input_ids, target_ids):
        h, hd = self.h, self.hd
        B, T = input_ids.shape
        ar = torch.arange(T, device=input_ids.device).expand_as(input_ids)
        pos = ar - torch.cummax(torch.where(input_ids == BOS_ID, ar, torch.zeros_like(ar)), dim=1).values
        freqs = pos[:, None, :, None].float() * self.inv_freq
        cos, sin = freqs.cos(), freqs.sin()
        x = F.rms_norm(self.tok_emb(input_ids), (h.model_dim,))
        for i in range(h.num_layers):
            y = F.rms_norm(x, (h.model_dim,))
            q = F.linear(y, self.qo_bank[2 * i]).view(B, T, h.num_heads, hd).transpose(1, 2)
            k = F.linear(y, self.kv_bank[2 * i]).view(B, T, h.num_kv_heads, hd).transpose(1, 2)
            v = F.linear(y, self.kv_bank[2 * i + 1]).view(B, T, h.num_kv_heads, hd).transpose(1, 2)
            q, k = rotate(F.rms_norm(q, (hd,)), cos, sin), rotate(F.rms_norm(k, (hd,)), cos, sin)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + self.attn_scale[i] * F.linear(a.transpose(1, 2).reshape(B, T, -1), self.qo_bank[2 * i + 1])
            y = F.rms_norm(x, (h.model_dim,))
            x = x + self.mlp_scale[i] * F.linear(torch.relu(F.linear(y, self.mlp_up_bank[i])).square(),
                                                 self.mlp_down_bank[i])
        logits = F.linear(F.rms_norm(x, (h.model_dim,)), self.tok_emb.weight)
        logits = h.logit_softcap * torch.tanh(logits / h.logit_softcap)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target_ids.reshape(-1))
'''

DIMS = dict(vocab=8192, layers=4, dim=256, heads=4, kv_heads=2)
LINE = re.compile(r"\[\s*([\d.]+)s\] self-generate: ([\d,]+)/([\d,]+) tok(?:, ETA (\d+)s| done in ([\d.]+)s)?$")


def record_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights with trained-like spreads: embedding std 0.1 (a peaked next-token distribution through
    the tied head), matrices std 1 / sqrt(fan_in), per-layer scales around 1."""
    g = torch.Generator().manual_seed(seed)
    d, L, kvd, m = DIMS["dim"], DIMS["layers"], DIMS["kv_heads"] * DIMS["dim"] // DIMS["heads"], 3 * DIMS["dim"]

    def mat(*shape):
        return torch.randn(*shape, generator=g) / shape[-1] ** 0.5

    return {"tok_emb.weight": torch.randn(DIMS["vocab"], d, generator=g) * 0.1,
            "qo_bank": mat(2 * L, d, d), "kv_bank": mat(2 * L, kvd, d), "mlp_up_bank": mat(L, m, d),
            "mlp_down_bank": mat(L, d, m), "attn_scale": 1 + 0.1 * torch.randn(L, d, generator=g),
            "mlp_scale": 1 + 0.1 * torch.randn(L, d, generator=g)}


def logged_run(fn):
    """(result, seconds, progress lines) of fn() with stderr a log (not a terminal), a line a second."""
    err, every = io.StringIO(), prog.LOG_EVERY_S
    prog.LOG_EVERY_S = 1.0
    try:
        with contextlib.redirect_stderr(err):
            t0 = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t0
    finally:
        prog.LOG_EVERY_S = every
    sys.stderr.write(err.getvalue())
    return out, seconds, err.getvalue().splitlines()


def eta_at(lines: list[str], frac: float = 0.10) -> dict:
    """The first ETA line past ``frac`` of the tokens: the ETA printed, the constant-rate ETA the
    parent printed (elapsed / tokens done x tokens left), and the time the run still took."""
    parsed = [LINE.search(line) for line in lines]
    parsed = [m for m in parsed if m]
    start = float(parsed[0].group(1))
    done = next(m for m in parsed if m.group(5))
    end = float(done.group(1))
    for m in parsed:
        if m.group(4) is None:
            continue
        stamp, n, total = float(m.group(1)), int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
        if n / total >= frac:
            left = end - stamp
            const = (stamp - start) / n * (total - n)
            return {"at_fraction": n / total, "eta_printed_s": int(m.group(4)), "constant_rate_eta_s": const,
                    "actual_left_s": left, "eta_error": int(m.group(4)) / left - 1, "constant_rate_error": const / left - 1}
    return {}


def part_timing(args) -> dict:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train_gpt.py"
        script.write_text(RECORD_SCRIPT.format(**DIMS))
        model = calibration_model(record_state_dict(), model_code=str(script))  # the --model-code path
        n, T, W = args.seqs, args.seq_len, args.window
        params = sum(p.numel() for p in model.parameters())
        before, before_s, before_lines = logged_run(
            lambda: selfgen_tokens(model, n, T, seed=args.seed, window=None, progress=True))
        t0 = time.perf_counter()
        cost = probe_cost(model, n, min(W, T - 1))
        probe_s = time.perf_counter() - t0
        estimate_s = cost.seconds(n, context_lengths(T, W))
        after, after_s, after_lines = logged_run(
            lambda: selfgen_tokens(model, n, T, seed=args.seed, window=W, progress=True))
    same = before == after
    return {"model": {**DIMS, "params": params, "script": "RECORD_SCRIPT in bench/selfgen_time.py"},
            "seqs": n, "seq_len": T, "window": W,
            "before_s": before_s, "after_s": after_s, "probe_s": probe_s, "speedup": before_s / (after_s + probe_s),
            "token_forwards_before": n * sum(context_lengths(T, None)),
            "token_forwards_after": n * sum(context_lengths(T, W)),
            "estimate_s": estimate_s, "estimate_error": estimate_s / after_s - 1,
            "same_below_window": bool(same[:, :W + 1].all()), "same_fraction": float(same.float().mean()),
            "eta_before": eta_at(before_lines), "eta_after": eta_at(after_lines)}


class AsUserModel(nn.Module):
    """The reference GPT behind a plain module: no KV-cached stepper, so it samples as a user's model."""

    def __init__(self, gpt: nn.Module):
        super().__init__()
        self.gpt = gpt

    def forward_logits(self, input_ids):
        return self.gpt.forward_logits(input_ids)


def part_hessians(args) -> dict:
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)
    gpt = calibration_model(sd)
    n, T, W = args.seqs, args.seq_len, args.window
    t0 = time.perf_counter()
    full_a = selfgen_tokens(gpt, n, T, seed=args.seed)  # KV-cached full prefix
    full_b = selfgen_tokens(gpt, n, T, seed=args.seed + 1)
    cached_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    win_a = selfgen_tokens(AsUserModel(gpt), n, T, seed=args.seed, window=W)
    window_s = time.perf_counter() - t0
    H = {k: collect_stats(gpt, toks, batch_seqs=4, fisher_seqs=0).hessians
         for k, toks in (("full_a", full_a), ("full_b", full_b), ("window_a", win_a))}
    gptq = get_method("int6-gptq")
    rows = []
    for name in sorted(H["full_a"]):
        if name not in sd or sd[name].ndim != 2 or name == "tok_emb.weight":
            continue
        W_ = sd[name].float()
        ref = H["full_a"][name].double()
        row = {"tensor": name}
        for k in ("full_b", "window_a"):
            row[f"hdiff_{k}"] = float((H[k][name].double() - ref).norm() / ref.norm())
        rows.append(row)
        if not name.startswith(GPTQ_BLOCKS):
            continue
        err = {}
        for k in ("full_a", "full_b", "window_a"):
            q = gptq.quantize(name, sd[name], QuantContext({name: H[k][name]}))
            W_hat = gptq.dequantize(q, tuple(W_.shape), torch.float32)
            err[k] = float(hessian_error(W_, W_hat, ref).sum())
        row["gptq_err_full_b"] = err["full_b"] / err["full_a"]
        row["gptq_err_window_a"] = err["window_a"] / err["full_a"]
        print(f"{name:<28} dH seedB {row['hdiff_full_b']:.3f} window {row['hdiff_window_a']:.3f}  "
              f"GPTQ err seedB {row['gptq_err_full_b']:.4f} window {row['gptq_err_window_a']:.4f}", flush=True)
    same = full_a == win_a

    def mean(key):
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals)

    return {"checkpoint": CKPT.name, "seqs": n, "seq_len": T, "window": W, "cached_sampling_s": cached_s,
            "window_sampling_s": window_s, "same_fraction_vs_cached": float(same.float().mean()),
            "same_below_window_vs_cached": bool(same[:, :W + 1].all()),
            "mean_hdiff_full_b": mean("hdiff_full_b"), "mean_hdiff_window_a": mean("hdiff_window_a"),
            "mean_gptq_err_full_b": mean("gptq_err_full_b"), "mean_gptq_err_window_a": mean("gptq_err_window_a"),
            "window_worse_hdiff": sum(r["hdiff_window_a"] > r["hdiff_full_b"] for r in rows), "rows": rows}


def markdown(res: dict) -> str:
    a = res["timing"]
    eb, ea = a["eta_before"], a["eta_after"]
    lines = [
        "# Self-generated calibration of a record-shaped user model (--model-code)",
        "",
        f"Machine: {res['machine']} (shared with other jobs; load average {res['loadavg'][0]} -> "
        f"{res['loadavg'][1]}). Wall time of the whole run: {res['wall_s']:.0f} s.",
        "",
        f"## A. Time, same seed, {a['seqs']} x {a['seq_len']} tokens",
        "",
        f"Model: a record-shaped train_gpt.py (3-D banks, GQA, rotary from BOS, tied SP8192 embedding, "
        f"loss-only forward), {a['model']['layers']} layers x {a['model']['dim']}, {a['model']['params']:,} "
        "parameters, random weights with trained-like spreads, loaded through the --model-code loader. "
        f"Scaled down from the product default (32 x 1024, window 128) to {a['seqs']} x {a['seq_len']}, window "
        f"{a['window']} (the same length / window ratio) to fit a shared 2-core CPU.",
        "",
        "| sampler | token-forwards | time | ETA at ~10% (printed / true) | ETA error |",
        "|---|---|---|---|---|",
        f"| before: whole prefix at every token, parent's constant-rate ETA | {a['token_forwards_before']:,} | "
        f"{a['before_s']:.1f} s | {eb['constant_rate_eta_s']:.0f} s / {eb['actual_left_s']:.0f} s | "
        f"{100 * eb['constant_rate_error']:+.0f}% |",
        f"| before, with this branch's fitted ETA (steps + token-forwards) | | | {eb['eta_printed_s']} s / "
        f"{eb['actual_left_s']:.0f} s | {100 * eb['eta_error']:+.0f}% |",
        f"| after: window {a['window']}, ETA fitted on the steps so far | {a['token_forwards_after']:,} | "
        f"{a['after_s']:.1f} s (+ {a['probe_s']:.1f} s probe) | {ea['eta_printed_s']} s / {ea['actual_left_s']:.0f} s"
        f" | {100 * ea['eta_error']:+.0f}% |",
        f"| after, the parent's constant-rate ETA on the same lines | | | {ea['constant_rate_eta_s']:.0f} s / "
        f"{ea['actual_left_s']:.0f} s | {100 * ea['constant_rate_error']:+.0f}% |",
        "",
        f"- speedup (probe included): **{a['speedup']:.1f}x**; the estimate the log line would print before "
        f"sampling: {a['estimate_s']:.1f} s against {a['after_s']:.1f} s ({100 * a['estimate_error']:+.0f}%).",
        f"- same tokens: every token below the window is the same ({a['same_below_window']}); beyond it "
        f"the window changes what is drawn: {100 * a['same_fraction']:.1f}% of all tokens agree.",
        "",
    ]
    if "hessians" in res:
        b = res["hessians"]
        lines += [
            f"## B. What the window does to the Hessians ({b['checkpoint']}, {b['seqs']} x {b['seq_len']}, "
            f"window {b['window']})",
            "",
            f"Sampling: KV-cached full prefix (seeds A and B) {b['cached_sampling_s']:.1f} s for both; windowed "
            f"(seed A, the checkpoint wrapped as a user model) {b['window_sampling_s']:.1f} s. Windowed tokens equal "
            f"the cached sampler's below the window: {b['same_below_window_vs_cached']}; "
            f"{100 * b['same_fraction_vs_cached']:.1f}% of all tokens agree.",
            "",
            "Per linear, against full-prefix seed A: relative Frobenius difference of the Hessian, and the "
            "Hessian-weighted error (under H_A) of int6 GPTQ run with that Hessian, as a ratio to GPTQ with H_A "
            f"(blocks {', '.join(blk.split('.')[1] for blk in GPTQ_BLOCKS)} only, for time; nan elsewhere).",
            "",
            f"- mean Hessian difference: another seed of full-prefix sampling {b['mean_hdiff_full_b']:.3f}; "
            f"windowed sampling {b['mean_hdiff_window_a']:.3f} (window larger than the seed noise on "
            f"{b['window_worse_hdiff']} of {len(b['rows'])} linears)",
            f"- mean GPTQ error ratio: another seed {b['mean_gptq_err_full_b']:.4f}; windowed "
            f"{b['mean_gptq_err_window_a']:.4f}",
            "- Read with care: windowed seed A shares its first window + 1 tokens per sequence (and the agreeing "
            "share above) with full-prefix seed A, so part of its smaller distance is shared draws. What this shows: "
            "at this sample size the window moves the Hessians less than a change of seed does (and a change of "
            "seed is itself large: so few tokens make GPTQ several times worse under another sample's Hessian). "
            "Not run, for time: window and full prefix on independent seeds, each against a third, at the "
            "default 32 x 1024 / window 128.",
            "",
            "| tensor | dH seed B | dH window | GPTQ err seed B | GPTQ err window |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r['tensor']} | {r['hdiff_full_b']:.3f} | {r['hdiff_window_a']:.3f} | "
                  f"{r.get('gptq_err_full_b', float('nan')):.4f} | {r.get('gptq_err_window_a', float('nan')):.4f} |"
                  for r in b["rows"]]
        lines.append("")
    cmd = f"python -m bench.selfgen_time {res['argv']}".strip()
    lines.append(f"Re-run: `{cmd}`.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--skip-hessians", action="store_true", help="part A only")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[0]
    machine = machine_description()
    t0 = time.perf_counter()
    res = {"machine": machine, "argv": " ".join(sys.argv[1:]), "timing": part_timing(args)}
    write(res, t0, load0)  # part A stands on its own if part B is cut short
    if not args.skip_hessians:
        res["hessians"] = part_hessians(args)
        write(res, t0, load0)
    print(markdown(res))


def write(res: dict, t0: float, load0: str) -> None:
    res["wall_s"] = time.perf_counter() - t0
    with open("/proc/loadavg") as f:
        res["loadavg"] = [load0, f.read().split()[0]]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selfgen_time.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "selfgen_time.md").write_text(markdown(res))


if __name__ == "__main__":
    main()
