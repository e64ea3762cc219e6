"""Self-generated calibration: a user's model samples through a sliding window (same tokens as the
full-prefix sampler below the window, deterministic), the built-in GPT's KV-cached tokens unchanged,
the cost model behind the ETA and the machine-sized default, and the CLI help that states the cost."""

from __future__ import annotations

import torch

from cli_run import STAMPED, run_main
from conftest import reference_like_state_dict
from pgcompress.model.calls import next_token_logits
from pgcompress.quant import calibration as C
from pgcompress.quant import selfgen
from pgcompress.quant.selfgen import StepCost, context_lengths, fit_count, selfgen_tokens, work_curve

VOCAB = 40

# A record-shaped model, small: a 3-D weight bank, rotary attention whose positions restart at
# each BOS (so a window's tokens are seen from position 0), a tied head, loss-only forward.
USER_SCRIPT = '''
import torch
import torch.nn.functional as F
from torch import nn

BOS_ID = 1


class Hyperparameters:
    vocab_size = 40
    model_dim = 16
    num_layers = 2


class GPT(nn.Module):
    def __init__(self, vocab_size, model_dim, num_layers):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.qkvo_bank = nn.Parameter(torch.zeros(num_layers, 4, model_dim, model_dim))
        self.inv_freq = 1.0 / 100 ** (torch.arange(0, model_dim, 2).float() / model_dim)

    def forward(self, input_ids, target_ids):
        T = input_ids.shape[1]
        ar = torch.arange(T).expand_as(input_ids)
        pos = ar - torch.cummax(torch.where(input_ids == BOS_ID, ar, 0), dim=1).values
        ang = pos[..., None].float() * self.inv_freq
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        x = self.tok_emb(input_ids)
        for w in self.qkvo_bank:
            h = F.rms_norm(x, (x.shape[-1],))
            q, k, v = (F.linear(h, w[i]) for i in range(3))
            half = q.shape[-1] // 2
            q, k = (torch.cat((t[..., :half] * cos[..., :half] - t[..., half:] * sin[..., :half],
                               t[..., half:] * cos[..., half:] + t[..., :half] * sin[..., half:]), -1) for t in (q, k))
            x = x + F.linear(F.scaled_dot_product_attention(q, k, v, is_causal=True), w[3])
        logits = F.linear(F.rms_norm(x, (x.shape[-1],)), self.tok_emb.weight)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target_ids.reshape(-1))
'''


def user_model(tmp_path, seed: int = 3):
    script = tmp_path / "train_gpt.py"
    script.write_text(USER_SCRIPT)
    g = torch.Generator().manual_seed(seed)
    sd = {"tok_emb.weight": torch.randn(VOCAB, 16, generator=g), "qkvo_bank": torch.randn(2, 4, 16, 16, generator=g) * 0.5}
    return sd, str(script), C.calibration_model(sd, model_code=str(script))


def sample_by_hand(model, n: int, seq_len: int, seed: int, window: int | None) -> torch.Tensor:
    """The sampling rule written out: token p+1 ~ softmax(logits of the last <= window tokens up to p),
    one generator, one multinomial draw per position for all sequences."""
    gen = torch.Generator().manual_seed(seed)
    toks = torch.full((n, seq_len), C.BOS_ID, dtype=torch.long)
    with torch.no_grad():
        for p in range(seq_len - 1):
            start = 0 if window is None else max(0, p + 1 - window)
            logits = next_token_logits(model, toks[:, start:p + 1].clone())
            toks[:, p + 1] = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen)[:, 0]
    return toks


def test_user_model_window_sampling_follows_the_rule_and_is_seeded(tmp_path):
    _, _, model = user_model(tmp_path)
    a = selfgen_tokens(model, 3, 14, seed=5, window=4)
    assert torch.equal(a, selfgen_tokens(model, 3, 14, seed=5, window=4))
    assert not torch.equal(a, selfgen_tokens(model, 3, 14, seed=6, window=4))
    assert torch.equal(a, sample_by_hand(model, 3, 14, 5, window=4))
    assert a.shape == (3, 14) and torch.all(a[:, 0] == C.BOS_ID) and int(a.max()) < VOCAB


def test_tokens_below_the_window_are_the_full_prefix_samplers(tmp_path):
    _, _, model = user_model(tmp_path)
    full = selfgen_tokens(model, 4, 16, seed=7, window=None)
    assert torch.equal(full, sample_by_hand(model, 4, 16, 7, window=None))
    assert torch.equal(selfgen_tokens(model, 4, 16, seed=7, window=15), full)  # the window holds every prefix
    windowed = selfgen_tokens(model, 4, 16, seed=7, window=5)
    assert torch.equal(windowed[:, :6], full[:, :6])  # positions 1..5 were drawn from whole prefixes
    assert not torch.equal(windowed, full)  # this model's positions matter: later tokens differ


def test_the_built_in_gpt_keeps_its_kv_cached_tokens_whatever_the_window():
    sd = reference_like_state_dict(seed=1, dim=32, layers=3, vocab=96, heads=4, kv_heads=2)
    model = C.calibration_model(sd)
    cached = selfgen_tokens(model, 3, 12, seed=4, batch_seqs=2)
    assert torch.equal(cached, selfgen_tokens(model, 3, 12, seed=4, batch_seqs=2, window=2))
    # independent: the same rule through the full forward at every position, batch by batch
    gen = torch.Generator().manual_seed(4)
    rows = []
    for b0, B in ((0, 2), (2, 1)):
        toks = torch.full((B, 12), C.BOS_ID, dtype=torch.long)
        with torch.no_grad():
            for p in range(11):
                logits = model.forward_logits(toks[:, :p + 1]).reshape(B, p + 1, -1)[:, -1]
                toks[:, p + 1] = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen)[:, 0]
        rows.append(toks)
    assert torch.equal(cached, torch.cat(rows))


def test_kv_cached_decoding_matches_the_full_forward():
    sd = reference_like_state_dict(seed=1, dim=32, layers=3, vocab=96, heads=4, kv_heads=2)
    model = C.calibration_model(sd)
    toks = torch.randint(0, 96, (2, 14), generator=torch.Generator().manual_seed(2))
    caches = model.kv_caches(2, 14)
    with torch.no_grad():
        full = model.forward_logits(toks).reshape(2, 14, -1)
        for pos in range(14):
            assert torch.allclose(model.forward_logits(toks[:, pos:pos + 1], caches, pos), full[:, pos], atol=1e-5)


def test_context_lengths_and_the_work_curve():
    assert context_lengths(6, None) == [1, 2, 3, 4, 5]
    assert context_lengths(6, 3) == [1, 2, 3, 3, 3]
    ctx = context_lengths(5, 2)  # [1, 2, 2, 2]
    work = work_curve(ctx, n_seqs=3, batch_seqs=2)  # a batch of 2, then one of 1: token-forwards run
    assert [work(n) for n in (0, 2, 4, 6, 8)] == [0, 2 * 1, 2 * 3, 2 * 5, 2 * 7]
    assert [work(n) for n in (9, 10, 11, 12)] == [14 + 1, 14 + 3, 14 + 5, 14 + 7]
    assert StepCost(0.5, 2.0).seconds(3, ctx) == 3 * (4 * 0.5 + 2.0 * 7)


def test_fit_count_halves_to_the_target_and_stops_at_the_floor():
    ctx = context_lengths(11, 4)  # sum = 1 + 2 + 3 + 4 * 7 = 34
    cost = StepCost(a=0.0, b=1.0)  # 34 s a sequence
    assert fit_count(cost, 32, ctx, target_s=10_000) == 32
    assert fit_count(cost, 32, ctx, target_s=34 * 9) == 8  # 16 x 34 > 306 >= 8 x 34
    assert fit_count(cost, 32, ctx, target_s=1) == selfgen.MIN_SELFGEN
    assert fit_count(cost, 3, ctx, target_s=1) == 3  # never more than asked


def test_calibration_sizes_a_user_models_default_and_says_so(tmp_path, monkeypatch, capsys):
    sd, script, _ = user_model(tmp_path)
    monkeypatch.setattr(C, "probe_cost", lambda model, batch, max_context: StepCost(0.0, 1.0))
    cfg = C.CalibConfig(selfgen=32, seq_len=12, selfgen_window=4, selfgen_target_s=8 * 38, model_code=script,
                        progress=True)  # 38 s a sequence: 8 fit
    stats = C.calibrate_stats(sd, cfg, fisher_seqs=2)
    assert stats.source == "8 x 12 self-generated tokens (each drawn given at most the 4 before it), 2 with gradients"
    err = capsys.readouterr().err
    note = [line for line in err.splitlines() if "32 cut to 8 to fit ~5.1 min" in line]
    assert len(note) == 1 and STAMPED.match(note[0]) and "8 x 12 tokens" in note[0]
    assert "each drawn from a forward of at most the 4 before it; estimated 5.1 min on this machine" in note[0]
    fixed = C.calibration_tokens(C.calibration_model(sd, model_code=script),
                                 C.CalibConfig(selfgen=32, seq_len=12, selfgen_window=4, model_code=script))
    assert fixed.shape == (32, 12)  # an explicit count is kept


def test_pack_help_states_the_cost_of_self_generation(capsys):
    code, out, _ = run_main(capsys, "pack", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "KV cache" in text and "re-runs the 128 before it" in text and "minutes on this machine" in text
    assert "--calib-shards costs one forward" in text


def test_the_cli_default_is_sized_and_an_explicit_count_is_not():
    from pgcompress.budget import DEFAULT_SELFGEN, DEFAULT_SELFGEN_S
    from pgcompress.cli.pack_cmd import calib_config

    auto = calib_config(None, None, 64, 1024, None, "cpu", solver=True)
    assert auto.selfgen == DEFAULT_SELFGEN and auto.selfgen_target_s == DEFAULT_SELFGEN_S
    assert calib_config(None, 5, 64, 1024, None, "cpu", solver=True).selfgen_target_s is None
    assert calib_config("x*.bin", None, 64, 1024, None, "cpu", solver=True).selfgen == 0


def test_pack_through_model_code_logs_the_count_and_its_estimate(tmp_path, capsys):
    sd, script, _ = user_model(tmp_path)
    ckpt = tmp_path / "custom.pt"
    torch.save(sd, ckpt)
    code, _, err = run_main(capsys, "pack", ckpt, "-o", tmp_path / "a.pgc", "--model-code", script,
                            "--calib-seq-len", "16", "--budget", 100_000)
    assert code == 0, err
    note = [line for line in err.splitlines() if "self-generate:" in line and "through the --model-code" in line]
    assert len(note) == 1 and STAMPED.match(note[0]), err
    assert "tokens through the --model-code model, each drawn from a forward of at most the 15 before it" in note[0]
    assert "estimated" in note[0] and ("within the default's ~3.0 min" in note[0] or "cut to" in note[0])
