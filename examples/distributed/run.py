"""Train, pack and evaluate on N processes with torchrun, then score the artifact with `pgc eval` on N too.

    python run.py --nproc 2 [KEY=VALUE ...]        # KEY=VALUE: environment for the training script

1. ``torchrun --nproc_per_node=N record_style/train_gpt.py``: DDP training (NCCL on CUDA, gloo on
   CPU), rank 0 packs the artifact with pgcompress, every rank takes its share of the roundtrip eval
   and the float64 sums are all-reduced;
2. ``torchrun --nproc_per_node=N -m pgcompress.cli eval final_model.pgc --model-code train_gpt.py``
   with the same data, sequence length and VAL_BATCH_SIZE: pgcompress's own eval loop, same split.

Both print ``final_int8_zlib_roundtrip_exact val_loss:... val_bpb:...``; this script prints both
lines and exits 1 if they differ.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "record_style" / "train_gpt.py"
EXACT = re.compile(r"^final_int8_zlib_roundtrip_exact .*$", re.M)


def torchrun(nproc: int, target: list[str], env: dict) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd[3:])} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--script", type=Path, default=SCRIPT)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args()
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in args.overrides)
    env.setdefault("OMP_NUM_THREADS", "1")
    h = {k: env.get(k, d) for k, d in (("DATA_PATH", "./data/datasets/fineweb10B_sp8192"),
                                       ("TOKENIZER_PATH", "./data/tokenizers/fineweb_8192_bpe.model"),
                                       ("EVAL_SEQ_LEN", "2048"), ("VAL_BATCH_SIZE", "524288"),
                                       ("VAL_TOKENS", "0"), ("ARTIFACT", "final_model.pgc"))}

    train_out = torchrun(args.nproc, [str(args.script)], env)
    eval_args = ["-m", "pgcompress.cli", "eval", h["ARTIFACT"], "--model-code", str(args.script),
                 "--data-path", h["DATA_PATH"], "--tokenizer", h["TOKENIZER_PATH"], "--seq-len", h["EVAL_SEQ_LEN"],
                 "--batch-tokens", h["VAL_BATCH_SIZE"], "--label", "int8_zlib"]
    if int(h["VAL_TOKENS"]):
        eval_args += ["--max-tokens", h["VAL_TOKENS"]]
    eval_out = torchrun(args.nproc, eval_args, env)
    ours, theirs = EXACT.findall(train_out), EXACT.findall(eval_out)
    print("\n".join(line for line in train_out.splitlines() if "model_params" in line or "total_bytes" in line))
    print(f"train_gpt.py x{args.nproc}: {ours[-1] if ours else 'no roundtrip line'}")
    print(f"pgc eval x{args.nproc}:     {theirs[-1] if theirs else 'no roundtrip line'}")
    same = bool(ours) and ours[-1:] == theirs[-1:]
    print(f"agree:{same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
