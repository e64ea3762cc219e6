"""examples/qat/train_gpt.py in a reduced configuration: QAT's fake-quant forward, the packed
artifact's roundtrip in the script, and `pgc eval` (pgcompress's built-in reference GPT, written
independently of the script's model) print the same val_loss and val_bpb to every digit."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO, SHARED

SCRIPT = REPO / "examples" / "qat" / "train_gpt.py"
DATA = SHARED / "data" / "sp1024"
TOKENIZER = SHARED / "data" / "tokenizers" / "fineweb_1024_bpe.model"
# dim 320: the attention and MLP matrices have more than 65,536 entries, so they are quantized
TINY = {"NUM_LAYERS": "2", "MODEL_DIM": "320", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "ITERATIONS": "6",
        "TRAIN_SEQ_LEN": "128", "TRAIN_BATCH_TOKENS": "1024", "VAL_BATCH_SIZE": "8192", "VAL_TOKENS": "8192",
        "QAT_METHOD": "int5-sdclip", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def values(out: str, key: str) -> str:
    m = re.search(rf"^{key} (val_loss:\S+ val_bpb:\S+)", out, re.M)
    assert m, f"no {key} line in:\n{out[-2000:]}"
    return m.group(1)


def test_qat_forward_roundtrip_and_pgc_eval_agree(tmp_path):
    env = {**os.environ, **TINY, "DATA_PATH": str(DATA), "TOKENIZER_PATH": str(TOKENIZER)}
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert int(re.search(r"fake-quantized tensors:(\d+)", out).group(1)) > 0
    assert re.search(r"^final_int8_zlib_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:\d+ms$", out, re.M)
    roundtrip = values(out, "final_int8_zlib_roundtrip_exact")
    assert values(out, "qat_fakequant_exact") == roundtrip  # QAT trained on exactly the decoded weights
    total = int(re.search(r"Total submission size: (\d+) bytes", out).group(1))
    assert total == (tmp_path / "final_model.pgc").stat().st_size + len(SCRIPT.read_bytes())
    e = subprocess.run([sys.executable, "-m", "pgcompress.cli", "eval", "final_model.pgc", "--data-path", str(DATA),
                        "--tokenizer", str(TOKENIZER), "--seq-len", "128", "--batch-tokens", "8192", "--max-tokens",
                        "8192", "--device", "cpu", "--label", "int8_zlib"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert e.returncode == 0, e.stderr[-2000:]
    assert values(e.stdout, "final_int8_zlib_roundtrip_exact") == roundtrip
