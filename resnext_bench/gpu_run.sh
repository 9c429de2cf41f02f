#!/usr/bin/env bash
# Everything a lent GPU machine is for, in one call, most important first; each part
# has its own time limit and writes its figures under $OUT as soon as it ends, so a
# call cut short still returns what finished.
#   1. resnext_torch against torchvision (an implementation we did not write), fp32 and fp64
#   2. resnext-parity --device gpu on the default model, form (c) in all three frameworks
#      (all nine builds at the end, when time is left)
#   3. resnext-bench --device gpu, torch with the torchvision peers
#   4. resnext-bench --device gpu, Flax: grouped convs native (what "auto" picks on GPU) and patches
#   5. resnext-bench --device gpu, Keras on JAX
# The GPU machine has torch, torchvision, jax, flax and optax but no TensorFlow: Keras runs on
# JAX there, from wheels carried in .whl/ (keras, namex, optree; see docs/performance.md).
# Usage there: bash resnext_bench/gpu_run.sh   (BATCH, BUDGET_S override the defaults;
# DEVICE=cpu IMAGE_SIZE=32 BATCH=2 is a dry run of the script itself on a CPU machine)
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

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, torchvision, jax, flax, optax, keras
print(sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__,
      'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__,
      'keras', keras.__version__, jax.devices())"

bench=(python3 -m resnext_bench.cli --device "$DEVICE" --models resnet50,resnext50_32x4d --batch "$BATCH"
       --image-size "$IMAGE_SIZE" --warmup 2 --repeats 10 --timeout 120)
part torchvision 120 python -m parity.torchvision_check --image-size "$IMAGE_SIZE" --json "$OUT/torchvision_gpu.json"
# Form (c) first: the three frameworks' own grouped convs (cuDNN) against each other. The explicit
# paths of (a) and (b) run eagerly, op by op, so they come last, when time is left.
parity=(env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 -m parity --device "$DEVICE")
part parity-c 150 "${parity[@]}" --forms c --json "$OUT/parity_gpu_c.json"
part bench-torch 100 "${bench[@]}" --frameworks torch --modes infer,train --json "$OUT/bench_torch.json"
part bench-flax 150 "${bench[@]}" --frameworks flax --modes infer,train --no-peers \
    --json "$OUT/bench_flax.json"
part bench-flax-patches 80 "${bench[@]}" --frameworks flax --modes infer,train --no-peers \
    --conv-impl patches --models resnext50_32x4d --json "$OUT/bench_flax_patches.json"
part bench-keras 150 "${bench[@]}" --frameworks keras --modes train --no-peers --json "$OUT/bench_keras.json"
part parity-all 300 "${parity[@]}" --json "$OUT/parity_gpu.json"
echo "=== done in $((SECONDS - start)) s"
