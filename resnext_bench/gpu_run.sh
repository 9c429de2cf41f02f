#!/usr/bin/env bash
# Everything a lent GPU machine is for, in one call, most important first; each part
# has its own time limit and writes its figures under $OUT as soon as it ends, so a
# call cut short still returns what finished.
#   1. resnext-parity --device gpu, all nine builds in fp32 (full fp32 pinned; TF32's error
#      shown in its own row), the builds compiled as on CPU
#   2. resnext-parity --precision float64: torch and Flax; Keras on JAX refuses float64, and
#      its one-line reason is printed
#   3. resnext_torch against torchvision (an implementation we did not write), fp32 and fp64
#   4. trajectory parity of the three frameworks (the harness runs it on CPU only: here on the
#      GPU machine's cores)
#   5. resnext-bench --device gpu: torch with the torchvision peers, bf16 rows with their error;
#      Flax (grouped convs native, what "auto" picks on GPU, and patches); Keras on JAX
# The GPU machine has torch, torchvision, jax, flax and optax but no TensorFlow: Keras runs on
# JAX there, from wheels carried in .whl/ (keras, namex, optree; see docs/performance.md).
# Usage there: bash resnext_bench/gpu_run.sh   (MODEL, BATCH, IMAGE_SIZE, BENCH_MODELS,
# BUDGET_S override the defaults). A dry run of the script itself on a CPU machine:
#   DEVICE=cpu MODEL=resnet18 IMAGE_SIZE=32 BATCH=2 BENCH_MODELS=resnet18 BENCH_MODES=infer \
#     bash resnext_bench/gpu_run.sh   (tests/test_gpu_script.py)
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
BATCH=${BATCH:-64}
IMAGE_SIZE=${IMAGE_SIZE:-224}
DEVICE=${DEVICE:-gpu}
BUDGET_S=${BUDGET_S:-560}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=1 KERAS_BACKEND=jax
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD:/tmp/site
start=$SECONDS

# part NAME SECONDS CMD...: run CMD under a limit, skipped when the budget has run out.
part() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET_S - (SECONDS - start)))
    if [ "$left" -lt 30 ]; then
        echo "=== $name: skipped, ${left} s of the budget left"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit} s, at $((SECONDS - start)) s)"
    timeout "$limit" "$@"
    echo "=== $name: exit $? after $((SECONDS - start)) s"
}

if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -c "import importlib, sys
names = ['torch', 'torchvision', 'jax', 'flax', 'optax', 'keras']
have = {n: getattr(importlib.import_module(n), '__version__', '?') for n in names
        if importlib.util.find_spec(n)}
import jax
print(sys.version.split()[0], ' '.join(f'{n} {v}' for n, v in have.items()), jax.devices())"

MODEL=${MODEL:-resnext26_8x16d}
BENCH_MODELS=${BENCH_MODELS:-resnet50,resnext50_32x4d}
BENCH_MODES=${BENCH_MODES:-infer,infer_bf16,train}
bench=(python3 -m resnext_bench.cli --device "$DEVICE" --models "$BENCH_MODELS" --batch-size "$BATCH"
       --image-size "$IMAGE_SIZE" --warmup 2 --repeats 10 --timeout 120 --modes "$BENCH_MODES")
parity=(env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 -m parity --device "$DEVICE" --models "$MODEL"
        ${PARITY_IMAGE_SIZE:+--image-size "$PARITY_IMAGE_SIZE"})
part parity-fp32 200 "${parity[@]}" --json "$OUT/parity_gpu.json"
part parity-float64 150 "${parity[@]}" --precision float64 --frameworks torch,flax \
    --json "$OUT/parity_gpu_float64.json"
# Refused before any work (exit 2, one line): printed so the reason is in the call's output.
part keras-float64 30 "${parity[@]}" --precision float64 --frameworks keras --quiet
part torchvision 60 python3 -m parity.torchvision_check --image-size "$IMAGE_SIZE" \
    --json "$OUT/torchvision_gpu.json"
part trajectory 120 python3 -m parity --device cpu --models "$MODEL" --forms c --checks trajectory \
    ${PARITY_IMAGE_SIZE:+--image-size "$PARITY_IMAGE_SIZE"} \
    --json "$OUT/trajectory.json"
part bench-torch 100 "${bench[@]}" --frameworks torch --json "$OUT/bench_torch.json"
part bench-flax 100 "${bench[@]}" --frameworks flax --no-peers --json "$OUT/bench_flax.json"
part bench-flax-patches 60 "${bench[@]}" --frameworks flax --no-peers --conv-impl patches \
    --json "$OUT/bench_flax_patches.json"
part bench-keras 100 "${bench[@]}" --frameworks keras --no-peers --json "$OUT/bench_keras.json"
echo "=== done in $((SECONDS - start)) s"
