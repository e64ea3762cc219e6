"""examples/record_style (import mode) and examples/self_contained, in a reduced configuration.

One tiny SP8192 run of the record-style script (4 layers, dim 64, depth recurrence on layers 1-2,
20 steps, 8,192 eval tokens) is shared by the tests. Its own eval_val is compared with `pgc eval
--model-code` (pgcompress's eval loop, written independently), and with the wrapped self-contained
submission decoded in a process where pgcompress cannot be imported.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO, SHARED
from pgcompress.errors import ModelError, PgcWarning
from pgcompress.eval.runner import EvalOptions, run
from pgcompress.eval.shards import read_shard, write_shard

EXAMPLES = REPO / "examples"
SCRIPT = EXAMPLES / "record_style" / "train_gpt.py"
TOKENIZER = SHARED / "data" / "tokenizers" / "fineweb_8192_bpe.model"
VAL = SHARED / "data" / "sp8192" / "fineweb_val_000000.bin"
EXACT = re.compile(r"^final_int8_zlib_roundtrip_exact val_loss:\S+ val_bpb:\S+$", re.M)
TINY = {"NUM_LAYERS": "4", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2",
        "RECUR_LAYERS": "1,2", "RECUR_START_FRAC": "0.5", "ITERATIONS": "20", "TRAIN_SEQ_LEN": "128",
        "TRAIN_BATCH_TOKENS": "1024", "VAL_BATCH_SIZE": "8192", "VAL_TOKENS": "8192", "EVAL_SEQ_LEN": "128",
        "PGC_METHOD": "int6-sdclip", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def sp8192_data(root: Path) -> Path:
    """A data dir: the shared SP8192 val shard, and a train shard cut from its second half (disjoint
    from the 8,192 tokens scored; the shared data has no SP8192 train shard)."""
    data = root / "data"
    data.mkdir()
    (data / "fineweb_val_000000.bin").symlink_to(VAL)
    write_shard(data / "fineweb_train_000000.bin", read_shard(VAL)[250_000:])
    return data


def tiny_env(data: Path, **extra) -> dict:
    return {**os.environ, **TINY, "DATA_PATH": str(data), "TOKENIZER_PATH": str(TOKENIZER), **extra}


def exact(out: str) -> str:
    found = EXACT.findall(out)
    assert found, out[-2000:]
    return found[-1]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """(run dir, data dir, the script's stdout) of one tiny training run."""
    root = tmp_path_factory.mktemp("record")
    data = sp8192_data(root)
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=root, env=tiny_env(data), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, data, r.stdout


def pgc_eval_opts(data: Path) -> EvalOptions:
    return EvalOptions(data_path=data, tokenizer_path=TOKENIZER, seq_len=128, batch_tokens=8192, max_tokens=8192,
                       device="cpu", label="int8_zlib")


def test_record_prints_the_challenge_lines_and_fits(record):
    _, _, out = record
    assert re.search(r"^model_params:\d+$", out, re.M)
    assert re.search(r"^final_int8_zlib_roundtrip val_loss:\d+\.\d{4} val_bpb:\d+\.\d{4} eval_time:\d+ms$", out, re.M)
    total = int(re.search(r"total_bytes:(\d+)", out).group(1))
    assert 0 < total < 16_000_000


def test_pgc_eval_model_code_agrees_with_the_records_own_eval(record):
    root, data, out = record
    cmd = [sys.executable, "-m", "pgcompress.cli", "eval", "final_model.pgc", "--model-code", str(SCRIPT),
           "--data-path", str(data), "--tokenizer", str(TOKENIZER), "--seq-len", "128", "--batch-tokens", "8192",
           "--max-tokens", "8192", "--device", "cpu", "--label", "int8_zlib"]
    r = subprocess.run(cmd, cwd=root, env=tiny_env(data), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert exact(r.stdout) == exact(out)  # every printed digit of val_loss and val_bpb
    assert "BOS_ID" not in r.stderr  # prepare_eval set it: no warning


def _variant(root: Path, name: str, old: str, new: str) -> Path:
    text = SCRIPT.read_text()
    assert old in text
    path = root / name
    path.write_text(text.replace(old, new))
    return path


PREPARE = '''def prepare_eval(model: nn.Module) -> nn.Module:
    """Runtime state of the trained network: the BOS id, and depth recurrence on (training ends with it)."""
    set_runtime(Hyperparameters())
    model.recur_active = True
    return model
'''


def test_without_prepare_eval_the_unset_bos_id_is_named(record, monkeypatch):
    root, data, _ = record
    for k, v in tiny_env(data).items():
        monkeypatch.setenv(k, v)
    script = _variant(root, "no_hook.py", PREPARE, "")
    with pytest.warns(PgcWarning, match="BOS_ID"):
        with pytest.raises(ModelError, match="BOS_ID"):
            run([root / "final_model.pgc"], replace(pgc_eval_opts(data), model_code=script))


def test_runtime_state_changes_the_score(record, monkeypatch):
    """The bug prepare_eval fixes: the network scored without its depth recurrence is another network."""
    root, data, out = record
    for k, v in tiny_env(data).items():
        monkeypatch.setenv(k, v)
    script = _variant(root, "no_recur.py", "    model.recur_active = True\n    return model\n", "    return model\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (res,) = run([root / "final_model.pgc"], replace(pgc_eval_opts(data), model_code=script))
    assert not [w for w in caught if "BOS_ID" in str(w.message)]  # BOS_ID is set: nothing to warn about
    assert f"val_bpb:{res.val_bpb:.8f}" not in exact(out)
    (res,) = run([root / "final_model.pgc"], replace(pgc_eval_opts(data), model_code=SCRIPT))
    assert f"val_loss:{res.val_loss:.8f} val_bpb:{res.val_bpb:.8f}" in exact(out)


def test_pack_calibrates_through_the_records_model(record):
    """`pgc pack --model-code`: GPTQ's Hessians from the record's own forward (prepare_eval applied)."""
    root, data, _ = record
    cmd = [sys.executable, "-m", "pgcompress.cli", "pack", "final_model.pt", "-o", "gptq.pgc", "--method",
           "int6-gptq", "--model-code", str(SCRIPT), "--calib-selfgen", "2", "--calib-seq-len", "32",
           "--code", str(SCRIPT), "--submission", "import", "--quiet"]
    r = subprocess.run(cmd, cwd=root, env=tiny_env(data), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    code = len(SCRIPT.read_text(encoding="utf-8").encode("utf-8"))
    assert f"code_bytes:{code} model_bytes:{(root / 'gptq.pgc').stat().st_size} " in r.stdout
    assert "BOS_ID" not in r.stderr


def test_self_contained_submission_decodes_without_pgcompress(record, tmp_path):
    root, data, out = record
    env = tiny_env(data)
    r = subprocess.run([sys.executable, str(EXAMPLES / "self_contained" / "make_submission.py"), "--script",
                        str(SCRIPT), "--checkpoint", str(root / "final_model.pt"), "--out", str(tmp_path / "sub"),
                        "--method", "int6-sdclip"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sub = tmp_path / "sub"
    counted = sub / "train_gpt.py"
    text = counted.read_text(encoding="utf-8")
    assert text.startswith(("import lzma", "import brotli"))  # the pgc wrap stub
    m = re.search(r"code_bytes:(\d+) model_bytes:(\d+) total_bytes:(\d+)", r.stdout)
    assert int(m.group(1)) == len(text.encode("utf-8"))
    assert int(m.group(2)) == (sub / "final_model.pgc").stat().st_size
    assert int(m.group(3)) < 16_000_000
    # the grader's run: eval only, pgcompress blocked, the current directory off sys.path
    check = EXAMPLES / "self_contained" / "check_isolated.py"
    r = subprocess.run([sys.executable, "-I", str(check), str(counted)], cwd=sub,
                       env={**env, "EVAL_ONLY": "1", "ARTIFACT": "final_model.pgc"}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"^model_params:\d+$", r.stdout, re.M)
    assert re.search(r"^final_int8_zlib_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:\d+ms$", r.stdout, re.M)
    assert exact(r.stdout) == exact(out)  # the same weights as the import-mode roundtrip
    # and the check does block pgcompress: the raw (import-mode) script fails there in its load path
    r = subprocess.run([sys.executable, "-I", str(check), str(SCRIPT)], cwd=sub,
                       env={**env, "EVAL_ONLY": "1", "ARTIFACT": "final_model.pgc"}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "blocked: pgcompress" in r.stderr


def test_paste_refuses_a_name_clash():
    sys.path.insert(0, str(EXAMPLES / "self_contained"))
    try:
        import make_submission
    finally:
        sys.path.pop(0)
    script = "def decode(x):\n    return x\n\nif __name__ == \"__main__\":\n    pass\n"
    with pytest.raises(SystemExit, match="decode"):
        make_submission.paste_decoder(script, "def decode(data):\n    return data\n")
    pasted = make_submission.paste_decoder(script.replace("def decode", "def load"), "def decode(d):\n    return d\n")
    assert pasted.index("def decode") < pasted.index('if __name__ == "__main__":')


HOOKS = '''
import torch
from torch import nn

FLAG = None

class Hyperparameters:
    vocab_size = 5

class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(5, 3))
        self.on = False

    def forward(self, x, y):
        return self.w.sum() * FLAG

def prepare_eval(model):
    RESULT
'''


def test_prepare_eval_hook_contract(tmp_path):
    """prepare_eval runs after the default build; it may return a replacement, None, or fails loudly."""
    from pgcompress.model.user_code import build_user_model

    sd = {"w": __import__("torch").ones(5, 3)}
    on = tmp_path / "on.py"
    on.write_text(HOOKS.replace("RESULT", "global FLAG\n    FLAG = 2.0\n    model.on = True"))
    model, vocab = build_user_model(on, sd, "x")
    assert model.on and vocab == 5 and float(model(None, None).detach()) == 30.0  # weights loaded, then the hook
    swap = tmp_path / "swap.py"
    swap.write_text(HOOKS.replace("RESULT", "global FLAG\n    FLAG = 1.0\n    return nn.Identity()"))
    assert isinstance(build_user_model(swap, sd, "x")[0], __import__("torch").nn.Identity)
    bad = tmp_path / "bad.py"
    bad.write_text(HOOKS.replace("RESULT", "return 3"))
    with pytest.raises(ModelError, match="prepare_eval returned int"):
        build_user_model(bad, sd, "x")
    unset = tmp_path / "unset.py"
    unset.write_text(HOOKS.replace("RESULT", "return None"))
    with pytest.warns(PgcWarning, match="FLAG"):
        model, _ = build_user_model(unset, sd, "x")
    with pytest.raises(ModelError, match=r"unset.py:\d+: the model's forward failed: .*TypeError.*FLAG still None"):
        model(None, None)
