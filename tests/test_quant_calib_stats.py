"""Calibration statistics (H, output sensitivity, embedding sensitivity, diagonal Fisher) against
independent computations: module hooks, retained gradients, explicit scatters, direct sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import reference_like_state_dict
from pgcompress.eval.shards import write_shard
from pgcompress.quant import calibration as C
from pgcompress.quant.calib_stats import collect_stats
from pgcompress.quant.calibration import calibration_model

VOCAB = 64


@pytest.fixture(scope="module")
def tiny():
    sd = reference_like_state_dict(seed=3, dim=32, layers=2, vocab=VOCAB, heads=4, kv_heads=2)
    return sd, calibration_model(sd)


def _tokens(n, L, seed=0, vocab=VOCAB):
    return torch.randint(0, vocab, (n, L), generator=torch.Generator().manual_seed(seed))


def _batches(tokens, stop, size):
    return [tokens[i:min(i + size, stop)] for i in range(0, stop, size)]


def test_hessians_equal_collect_hessians_on_the_same_inputs(tiny):
    _, model = tiny
    tokens = _tokens(5, 13)
    stats = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=3)
    H = C.collect_hessians(model, tokens[:, :-1], batch_seqs=2)  # stats feed x[:, :-1]
    assert set(stats.hessians) == set(H)  # every nn.Linear weight plus the tied head
    for k, h in H.items():
        assert stats.hessians[k].dtype == torch.float32 and stats.hessians[k].device.type == "cpu"
        assert torch.allclose(stats.hessians[k], h, rtol=1e-5, atol=1e-4), k
        assert stats.tokens[k] == 5 * 12
    assert stats.fisher_tokens == 3 * 12


def _forward_with_outputs(model, x):
    """Summed CE of the reference GPT with every Linear output and the head's pre-cap logits kept."""
    outs, hooks = {}, []

    def keep(name):
        def hook(module, inputs, out):
            out.retain_grad()
            outs[name] = out
        return hook

    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(keep(n + ".weight")))
    hooks.append(model.tok_emb.register_forward_hook(keep("emb")))
    hooks.append(model.blocks[-1].register_forward_hook(keep("last")))
    loss = model(x[:, :-1], x[:, 1:]) * x[:, 1:].numel()  # the model's own mean-loss path, unscaled
    for h in hooks:
        h.remove()
    return loss, outs, outs.pop("last")


def test_out_sens_is_the_mean_squared_per_token_output_gradient(tiny):
    _, model = tiny
    tokens = _tokens(4, 10, seed=1)
    stats = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=3)
    sq, rows = {}, {}
    cap = model.cfg.logit_softcap
    for p in model.parameters():
        p.requires_grad_(True)
    for x in _batches(tokens, 3, 2):
        loss, outs, h = _forward_with_outputs(model, x)
        loss.backward()
        for k, o in outs.items():
            if k != "emb":
                g = o.grad.reshape(-1, o.shape[-1]).double()
                sq[k] = sq.get(k, 0) + g.square().sum(0)
                rows[k] = rows.get(k, 0) + g.shape[0]
        # tied head, analytically: dL/dz = (softmax(cap*tanh(z/cap)) - onehot) * (1 - tanh(z/cap)^2)
        with torch.no_grad():
            z = F.linear(F.rms_norm(h, (h.shape[-1],)), model.tok_emb.weight).reshape(-1, VOCAB).double()
            t = torch.tanh(z / cap)
            g = (torch.softmax(cap * t, -1) - F.one_hot(x[:, 1:].reshape(-1), VOCAB)) * (1 - t * t)
        sq["tok_emb.weight"] = sq.get("tok_emb.weight", 0) + g.square().sum(0)
        rows["tok_emb.weight"] = rows.get("tok_emb.weight", 0) + g.shape[0]
        model.zero_grad(set_to_none=True)
    assert set(stats.out_sens) == set(sq)
    for k in sq:
        assert rows[k] == 3 * 9
        assert torch.allclose(stats.out_sens[k].double(), sq[k] / rows[k], rtol=1e-4, atol=1e-10), k


def test_emb_sens_is_an_explicit_scatter_of_squared_gradients(tiny):
    _, model = tiny
    tokens = _tokens(3, 9, seed=2)
    stats = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=3)
    want = torch.zeros(VOCAB, 32, dtype=torch.float64)
    for p in model.parameters():
        p.requires_grad_(True)
    for x in _batches(tokens, 3, 2):
        loss, outs, _ = _forward_with_outputs(model, x)
        loss.backward()
        g = outs["emb"].grad.double()  # [B, T, d]
        for b in range(g.shape[0]):
            for t in range(g.shape[1]):
                want[int(x[b, t])] += g[b, t] ** 2
        model.zero_grad(set_to_none=True)
    assert set(stats.emb_sens) == {"tok_emb.weight"}
    assert torch.allclose(stats.emb_sens["tok_emb.weight"].double(), want / (3 * 8), rtol=1e-4, atol=1e-12)


def test_grad_sq_is_the_batch_mean_of_squared_summed_loss_gradients(tiny):
    _, model = tiny
    tokens = _tokens(6, 8, seed=3)
    model.blocks[0].attn.q_gain.requires_grad_(False)  # frozen params still get a Fisher entry
    try:
        stats = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=4)
        assert not model.blocks[0].attn.q_gain.requires_grad
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.blocks[0].attn.q_gain.requires_grad_(True)
    want = {}
    for x in _batches(tokens, 4, 2):
        n = x[:, 1:].numel()
        grads = torch.autograd.grad(model(x[:, :-1], x[:, 1:]) * n, list(model.parameters()))
        for (name, _), g in zip(model.named_parameters(), grads):
            want[name] = want.get(name, 0) + g.double().square() / n / 2  # 2 backward batches
    assert set(stats.grad_sq) == set(want)
    for k, w in want.items():
        assert stats.grad_sq[k].shape == w.shape
        assert torch.allclose(stats.grad_sq[k].double(), w, rtol=1e-4, atol=1e-14), k


def test_deterministic_and_no_fisher_when_fisher_seqs_is_zero(tiny):
    _, model = tiny
    tokens = _tokens(3, 8, seed=4)
    a = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=2)
    b = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=2)
    for da, db in [(a.hessians, b.hessians), (a.out_sens, b.out_sens), (a.grad_sq, b.grad_sq), (a.emb_sens, b.emb_sens)]:
        assert all(torch.equal(da[k], db[k]) for k in da)
    z = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=0)
    assert z.fisher_tokens == 0 and not z.out_sens and not z.grad_sq and not z.emb_sens
    assert set(z.hessians) == set(a.hessians)


class BankModel(nn.Module):
    """Not the reference: a 3-D bf16 weight bank sliced per layer, cast to the activations' dtype."""

    def __init__(self, vocab=VOCAB, dim=8, layers=3):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.emb = nn.Parameter(torch.randn(vocab, dim, generator=g))
        self.bank = nn.Parameter((torch.randn(layers, dim, dim, generator=g) * 0.3).bfloat16())
        self.gate = nn.Parameter(torch.ones(dim))

    def forward(self, input_ids, target_ids):
        x = F.embedding(input_ids, self.emb)
        for i in range(self.bank.shape[0]):
            x = x + F.linear(torch.tanh(x) * self.gate, self.bank[i].to(x.dtype))
        logits = F.linear(x, self.emb)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_ids.reshape(-1))


def test_bank_slices_get_their_own_keys_and_hessians():
    model = BankModel()
    tokens = _tokens(5, 7, seed=5)
    stats = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=2)
    assert set(stats.hessians) == {"bank[0]", "bank[1]", "bank[2]", "emb"}
    assert set(stats.out_sens) == set(stats.hessians) and set(stats.emb_sens) == {"emb"}
    assert set(stats.grad_sq) == {"emb", "bank", "gate"}
    assert stats.grad_sq["bank"].shape == (3, 8, 8)
    # independent: replay the forward by hand, summing each slice's inputs' x x^T in float64
    want = {k: torch.zeros(8, 8, dtype=torch.float64) for k in stats.hessians}
    with torch.no_grad():
        x = F.embedding(tokens[:, :-1], model.emb).reshape(-1, 8)
        for i in range(3):
            inp = (torch.tanh(x) * model.gate).double()
            want[f"bank[{i}]"] += inp.T @ inp
            x = x + inp.float() @ model.bank[i].float().T
        want["emb"] += x.double().T @ x.double()
    for k in want:
        assert torch.allclose(stats.hessians[k].double(), want[k], rtol=1e-4, atol=1e-4), k
        assert stats.tokens[k] == 5 * 6
        assert stats.out_sens[k].shape == (VOCAB if k == "emb" else 8,)
    assert model.bank.grad is None and model.bank.dtype == torch.bfloat16


def test_loss_fn_overrides_the_default_loss():
    model = BankModel()
    tokens = _tokens(2, 6, seed=6)
    calls = []

    def loss_fn(m, inputs, targets):
        calls.append((tuple(inputs.shape), tuple(targets.shape)))
        return 2 * m(inputs, targets) * targets.numel()

    base = collect_stats(model, tokens, batch_seqs=1, fisher_seqs=1)
    doubled = collect_stats(model, tokens, batch_seqs=1, fisher_seqs=1, loss_fn=loss_fn)
    assert calls == [((1, 5), (1, 5))] * 2
    for k in base.grad_sq:  # gradients scale by 2, their squares by 4
        assert torch.allclose(doubled.grad_sq[k], 4 * base.grad_sq[k], rtol=1e-5), k
    for k in base.out_sens:
        assert torch.allclose(doubled.out_sens[k], 4 * base.out_sens[k], rtol=1e-5), k


USER_SCRIPT = '''
import torch
import torch.nn.functional as F
from torch import nn


class Hyperparameters:
    vocab_size = 48
    model_dim = 8
    num_layers = 2


class CastedLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype))


class GPT(nn.Module):
    def __init__(self, vocab_size, model_dim, num_layers):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.qo_bank = nn.Parameter(torch.zeros(num_layers, model_dim, model_dim))
        self.fc = CastedLinear(model_dim, model_dim, bias=False)

    def forward(self, input_ids, target_ids):
        x = self.tok_emb(input_ids)
        for i in range(self.qo_bank.shape[0]):
            x = x + torch.relu(F.linear(x, self.qo_bank[i].to(x.dtype)))
        x = self.fc(x)
        logits = F.linear(x, self.tok_emb.weight.to(x.dtype)).float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="mean")
'''


def _user_state_dict():
    g = torch.Generator().manual_seed(11)
    return {"tok_emb.weight": torch.randn(48, 8, generator=g).bfloat16(),
            "qo_bank": torch.randn(2, 8, 8, generator=g) * 0.3, "fc.weight": torch.randn(8, 8, generator=g) * 0.3}


def test_user_model_from_train_gpt_script(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(USER_SCRIPT)
    sd = _user_state_dict()
    model = calibration_model(sd, model_code=str(script))
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert not hasattr(model, "forward_logits")
    tokens = _tokens(4, 9, seed=8, vocab=48)
    stats = collect_stats(model, tokens, batch_seqs=2, fisher_seqs=2)
    assert set(stats.hessians) == {"qo_bank[0]", "qo_bank[1]", "fc.weight", "tok_emb.weight"}
    assert set(stats.emb_sens) == {"tok_emb.weight"} and set(stats.grad_sq) == {"tok_emb.weight", "qo_bank", "fc.weight"}
    # H of qo_bank[0] reads the embeddings directly: an independent sum
    x0 = F.embedding(tokens[:, :-1], sd["tok_emb.weight"].float()).reshape(-1, 8).double()
    assert torch.allclose(stats.hessians["qo_bank[0]"].double(), x0.T @ x0, rtol=1e-5, atol=1e-5)
    # Fisher through the model's mean-loss contract, computed directly
    want = {}
    for x in _batches(tokens, 2, 2):
        n = x[:, 1:].numel()
        grads = torch.autograd.grad(model(x[:, :-1], x[:, 1:]) * n, list(model.parameters()))
        for (name, _), g in zip(model.named_parameters(), grads):
            want[name] = g.double().square() / n
    for k, w in want.items():
        assert torch.allclose(stats.grad_sq[k].double(), w, rtol=1e-4, atol=1e-14), k


def test_calibrate_and_calibrate_stats_honour_model_code(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text(USER_SCRIPT)
    sd = _user_state_dict()
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(2000, dtype=np.uint16) % 48)
    cfg = C.CalibConfig(shards=str(tmp_path / "fineweb_train_*.bin"), seqs=3, seq_len=10, model_code=str(script))
    H = C.calibrate(sd, cfg)
    assert set(H) == {"qo_bank[0]", "qo_bank[1]", "fc.weight", "tok_emb.weight"}
    stats = C.calibrate_stats(sd, cfg, fisher_seqs=2)
    assert stats.source == "3 x 10 shard tokens, 2 with gradients" and stats.fisher_tokens == 2 * 9
    assert all(torch.allclose(stats.hessians[k], H[k], rtol=1e-5, atol=1e-5) for k in H)  # batching differs
    # self-generated sequences from a model without forward_logits: logits caught at cross_entropy
    gen = C.CalibConfig(selfgen=2, seq_len=6, model_code=str(script))
    a = C.calibrate_stats(sd, gen, fisher_seqs=1)
    b = C.calibrate_stats(sd, gen, fisher_seqs=1)
    assert a.source == "2 x 6 self-generated tokens, 1 with gradients"
    assert all(torch.equal(a.hessians[k], b.hessians[k]) for k in a.hessians)
    toks = C.selfgen_tokens(calibration_model(sd, model_code=str(script)), 2, 6, seed=3)
    assert toks.shape == (2, 6) and torch.all(toks[:, 0] == C.BOS_ID) and int(toks.max()) < 48


def test_next_token_logits_of_a_loss_only_model_match_its_head():
    from pgcompress.model.calls import next_token_logits

    model = BankModel()
    toks = _tokens(2, 5, seed=9)
    got = next_token_logits(model, toks)
    with torch.no_grad():  # the head by hand
        x = F.embedding(toks, model.emb)
        for i in range(3):
            x = x + F.linear(torch.tanh(x) * model.gate, model.bank[i].float())
        want = F.linear(x, model.emb)[:, -1]
    assert got.shape == (2, VOCAB) and torch.allclose(got, want, atol=1e-5)
