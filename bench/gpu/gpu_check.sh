#!/usr/bin/env bash
# Device checks for the Triton kernels (issue #20) and the CUDA paths CI never runs, on one lent
# H100/H200. Writes kernels.{md,json}, gpu.{md,json}, gpu_kernels_check.json and log.txt to $OUT
# (the device tool brings back only $OUT): copy kernels.* and gpu.* into bench/results/ afterwards.
#
# (bench/gpu_check.sh forwards here, so the commands below may name either path.)
#
# 1. Here, once, in the repo root (reads ../shared/data; pip needs the network):
#        bash bench/gpu_check.sh prepare
#    - stages .gpu_carry/ (35 MiB, bench/gpu/prepare.py): the shared checkpoint with bf16 linear
#      weights (the fp32 file, 67 MB, is over the 64 MiB carry limit; this copy scores the same),
#      the sp1024 val shard, the tokenizer, a 262,144-token train slice for GPTQ calibration;
#    - the device image has torch, triton, numpy, safetensors, sentencepiece, click and tqdm but
#      LACKS zstandard, brotli and python-minifier, which pgcompress imports: their wheels are
#      downloaded into .whl/ for Python 3.12 x86-64 (/work/.library/device/README.md) and carried;
#    - adds /.gpu_carry/ and /.whl/ to .git/info/exclude so they travel only through `carry`.
# 2. On the device, one call (estimated 5-7 minutes, bounded by the steps' timeouts at 8.5 min,
#    plus the machine's start; not yet run anywhere, so the estimate is unmeasured):
#        run(command="bash bench/gpu_check.sh device", carry=[".whl", ".gpu_carry"], timeout_s=590)
#    or two shorter calls: "bash bench/gpu_check.sh device-kernels" (GPU correctness checks +
#    bench/kernels.py) then "bash bench/gpu_check.sh device-eval" (bench/gpu/cuda_paths.py: pgc eval
#    --device cuda vs the reference's eval_val, CPU vs GPU, GPTQ time, tokens/s).
#    Each step has its own timeout, so one that hangs does not take the others with it; the
#    dry run `python -m bench.gpu.cuda_paths --device cpu --max-tokens 1024 --calib-seqs 2
#    --out /tmp/x` checks the eval step here without a GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
stage="${1:-device}"

if [ "$stage" = prepare ]; then
    set -e
    PY="${PYTHON:-.venv/bin/python}"
    "$PY" -m bench.gpu.prepare --dest .gpu_carry
    mkdir -p .whl
    for pkg in zstandard==0.25.0 brotli==1.2.1 python-minifier==3.4.0; do
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "$pkg"
    done
    for p in /.gpu_carry/ /.whl/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude; done
    ls -la .whl; du -sh .gpu_carry .whl
    exit 0
fi

OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/log.txt"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed: run 'bash bench/gpu_check.sh prepare' here and carry .whl"; exit 2; }
# pgcompress without a build: its package-dir mapping (pgcompress.cli -> cli/, pgcompress.kernels ->
# kernels/) rebuilt as a plain tree, first on the path, with bench/ linked beside it. The scripts
# run as modules from that tree (python -m puts the working directory first on sys.path, and the
# checkout's own pgcompress/ has no cli/ or kernels/ inside); paths they are given are absolute.
rm -rf /tmp/pgc && mkdir -p /tmp/pgc && cp -r pgcompress /tmp/pgc/ && cp -r cli /tmp/pgc/pgcompress/cli \
    && cp -r kernels /tmp/pgc/pgcompress/kernels && ln -s "$ROOT/bench" /tmp/pgc/bench
export PYTHONPATH=/tmp/pgc:/tmp/site
unset TRITON_INTERPRET
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
rc=0
if [ "$stage" = device ] || [ "$stage" = device-kernels ]; then
    echo "== GPU correctness: kernels on CUDA vs _ref on CPU"
    (cd /tmp/pgc && timeout 150 python3 -m bench.gpu.kernels_check --out "$OUT" \
        --ckpt "$ROOT/.gpu_carry/ref_sp1024_9x512_bf16lin.safetensors") || rc=1
    echo "== bench/kernels.py"
    (cd /tmp/pgc && timeout 180 python3 -m bench.kernels --out "$OUT") || rc=1
fi
if [ "$stage" = device ] || [ "$stage" = device-eval ]; then
    echo "== bench/gpu/cuda_paths.py"
    (cd /tmp/pgc && timeout 180 python3 -m bench.gpu.cuda_paths --carry "$ROOT/.gpu_carry" --out "$OUT") || rc=1
fi
echo "gpu_check.sh $stage: exit $rc"
exit $rc
