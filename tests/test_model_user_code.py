"""--model-code: the build_model hook, and user-code exceptions as one-line ModelErrors that name
the script's file and line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pgcompress.errors import ModelError
from pgcompress.model.user_code import build_user_model, user_code_errors
from pgcompress.quant.calib_stats import collect_stats
from pgcompress.quant.calibration import calibration_model

HOOK_SCRIPT = '''
import torch
from torch import nn

class Hyperparameters:
    vocab_size = 5

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(5, 3, dtype=torch.bfloat16))

def build_model(state_dict):
    m = Tiny()
    m.w.data.copy_(state_dict["w"] * 2)  # the hook decides how weights are loaded
    m.train()
    return m
'''


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _line_of(text: str, marker: str) -> int:
    """1-based line of the script that contains ``marker`` (found independently of the code)."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def test_build_model_hook_is_used_as_returned(tmp_path):
    script = _write(tmp_path, "hook.py", HOOK_SCRIPT)
    w = torch.randn(5, 3)
    model, vocab = build_user_model(script, {"w": w}, "ckpt.pt")
    assert type(model).__name__ == "Tiny" and vocab == 5 and not model.training
    assert model.w.dtype == torch.bfloat16  # no reference dtype rules applied
    assert torch.equal(model.w, (w * 2).bfloat16())  # the hook's loading, not load_strict's
    no_hp = _write(tmp_path, "nohp.py", HOOK_SCRIPT.replace("class Hyperparameters:\n    vocab_size = 5\n", ""))
    assert build_user_model(no_hp, {"w": w}, "x")[1] is None
    not_module = _write(tmp_path, "notmod.py", "def build_model(state_dict):\n    return 42\n")
    with pytest.raises(ModelError, match="build_model returned int"):
        build_user_model(not_module, {}, "x")


GPT_SCRIPT = '''
import torch
import torch.nn.functional as F
from torch import nn

class Hyperparameters:
    vocab_size = 16
    dim = 4

def helper(x, w):
    return F.linear(x, w)  # LINEAR-CALL

class GPT(nn.Module):
    def __init__(self, vocab_size, dim):
        super().__init__()
        if vocab_size == 17:
            raise ValueError("bad vocab\\nsecond line")  # INIT-RAISE
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.w = nn.Parameter(torch.zeros(vocab_size, dim + 1))

    def forward(self, input_ids, target_ids):
        x = self.tok_emb(input_ids)
        logits = helper(x, self.w)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_ids.reshape(-1))
'''


def _one_line_error(excinfo, path, line):
    msg = str(excinfo.value)
    assert "\n" not in msg and "model code" in msg
    assert f"{path.resolve()}:{line}" in msg, msg
    return msg


def test_errors_in_the_users_gpt_name_its_file_and_line(tmp_path):
    script = _write(tmp_path, "train_gpt.py", GPT_SCRIPT.replace("vocab_size = 16", "vocab_size = 17"))
    with pytest.raises(ModelError) as e:
        build_user_model(script, {}, "x")
    msg = _one_line_error(e, script, _line_of(GPT_SCRIPT, "INIT-RAISE"))
    assert "GPT(...) failed" in msg and msg.endswith("ValueError: bad vocab")


def test_errors_in_the_users_forward_during_calibration(tmp_path):
    script = _write(tmp_path, "train_gpt.py", GPT_SCRIPT)
    sd = {"tok_emb.weight": torch.randn(16, 4), "w": torch.randn(16, 5)}  # w's in-dim 5 != dim 4
    model = calibration_model(sd, model_code=str(script))
    tokens = torch.randint(0, 16, (2, 6), generator=torch.Generator().manual_seed(0))
    for fisher in (0, 2):  # forward-only and backward batches
        with pytest.raises(ModelError) as e:
            collect_stats(model, tokens, batch_seqs=2, fisher_seqs=fisher)
        # innermost frame in the script: the helper's F.linear, not forward's call of the helper
        assert "forward" in _one_line_error(e, script, _line_of(GPT_SCRIPT, "LINEAR-CALL"))
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_errors_at_import_and_in_build_model(tmp_path):
    text = "import torch\n\nraise RuntimeError('no GPU here')  # IMPORT-RAISE\n"
    script = _write(tmp_path, "imp.py", text)
    with pytest.raises(ModelError, match="importing it failed") as e:
        build_user_model(script, {}, "x")
    _one_line_error(e, script, _line_of(text, "IMPORT-RAISE"))
    syntax = "x = 1\ndef broken(:\n    pass\n"
    script = _write(tmp_path, "syn.py", syntax)
    with pytest.raises(ModelError, match="SyntaxError") as e:
        build_user_model(script, {}, "x")
    _one_line_error(e, script, 2)
    hook = "def load(sd):\n    return sd['missing']  # HOOK-RAISE\n\ndef build_model(state_dict):\n    return load(state_dict)\n"
    script = _write(tmp_path, "hook.py", hook)
    with pytest.raises(ModelError, match="build_model") as e:
        build_user_model(script, {}, "x")
    assert "KeyError" in _one_line_error(e, script, _line_of(hook, "HOOK-RAISE"))


def test_errors_outside_user_code_pass_through():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

        def forward(self, x, y):
            raise ZeroDivisionError("ours")

    with pytest.raises(ZeroDivisionError):
        collect_stats(Broken(), torch.zeros(1, 4, dtype=torch.long), fisher_seqs=0)
    with pytest.raises(KeyError):
        with user_code_errors("anything"):
            {}["k"]
