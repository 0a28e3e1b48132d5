#!/usr/bin/env bash
# The GPU checks of issue 15 item 6, as one prepared run for a session that is lent a GPU
# machine (the `device` tool; never CI). That machine has PyTorch, transformers and pytest but
# not pydantic, and reaches no package index, so pydantic's wheels travel with the call. Here,
# once, from the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic pydantic-core annotated-types typing-inspection typing-extensions
#   python3 -m pip download --no-deps -d .whl webdataset braceexpand   (bench/data.py's shards)
#   (keep the pydantic / pydantic-core pair of requirements/constraints.txt)
# then: run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=540).
# What comes back under $OUT: nvidia-smi's view, the CUDA tests' log, and bench/trainer.py's
# rows for `base` in bf16 (eager, then torch.compile): samples/s, peak memory, SDPA kernels;
# and bench/data.py's GPU side: `base` fed from JPEG shards through the input pipeline
# (augmentation on, 8 and 14 workers): samples/s and the GPU's busy fraction (1 - the share of
# the loop's time spent waiting for a batch).
set -uo pipefail
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")' \
  | tee "$OUT/versions.txt"
timeout 180 python3 -m pytest -q -rs -p no:cacheprovider tests/trainer/test_cuda.py \
  tests/trainer/test_sdpa_probe.py 2>&1 | tee "$OUT/cuda-tests.log"
timeout 150 python3 bench/trainer.py --devices cuda --presets base --steps 20 \
  > "$OUT/base-bf16.json" 2> "$OUT/base-bf16.err"
timeout 150 python3 bench/trainer.py --devices cuda --presets base --steps 20 --compile \
  > "$OUT/base-bf16-compile.json" 2> "$OUT/base-bf16-compile.err"
cat "$OUT"/base-bf16*.json
for workers in 8 14; do
  timeout 150 python3 bench/data.py --device cuda --workers "$workers" \
    > "$OUT/data-gpu-w$workers.json" 2> "$OUT/data-gpu-w$workers.err"
done
cat "$OUT"/data-gpu-w*.json
