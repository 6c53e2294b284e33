#!/usr/bin/env bash
# One GPU session: every GPU number of the README (bench_gpu, the default study on the GPU, torchrun scaling),
# in order of importance, each part under its own timeout and all of them under one deadline, so that a
# hanging part costs only its own share.
#
#   (a) benchmarks/bench_gpu.py, every section (methods vs Captum and the floor, fast paths, bf16,
#       NeuroMask faithful on all 10,000 Fashion-MNIST test images)
#   (b) the default study on the GPU with the cached default models (timings.json: time by stage)
#   (b2) benchmarks/bench_measures.py --device cuda (every measure on the GPU and its forward floor; no
#       Quantus columns: Quantus is not installed there)
#   (c) benchmarks/bench_scaling.py --ranks 1 8 --device cpu (gloo; explain stage on 8 processes vs 1)
#   (d) benchmarks/bench_scaling.py --ranks 1 --device cuda (the same benchmark on the one GPU)
#
# Needs, in cache/ (gitignored; carry=["cache"]): captum-*.whl, fashion-mnist/*.gz (the idx files) and
# binsight/models/ (the default study's six cached models: BINSIGHT_CACHE=cache/binsight).
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh             # on the GPU machine (its $OUT)
#   QUICK=1 DEVICE=cpu OUT=/tmp/x bash benchmarks/gpu_session.sh   # smoke run of the script, tiny sizes
#
# Writes at most 9 files into $OUT: session.log, nvidia-smi.txt, gpu/bench_gpu.{json,md},
# gpu/bench_measures.json, study/{timings,verdicts,run,models}.json.
set -u
OUT=${OUT:?set OUT to the folder for the results}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
DEADLINE=${DEADLINE:-530}          # seconds from the start; every part's timeout is cut to what is left
PY=${PY:-python3}
ROOT=$(pwd)
START=$(date +%s)
mkdir -p "$OUT"

main() {

export PYTHONUNBUFFERED=1
export BINSIGHT_DATA="$ROOT/cache/fashion-mnist"
SITE=/tmp/gpu_session_site
if ! $PY -c "import captum" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$ROOT"/cache/captum-*.whl \
        || { mkdir -p "$SITE" && (cd "$SITE" && unzip -qo "$ROOT"/cache/captum-*.whl); }
fi
export PYTHONPATH="$ROOT/src:$SITE"

left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
part() {  # part NAME CAP_SECONDS COMMAND...: the command under timeout min(CAP, time left)
    local name=$1 cap=$2 r t s rc
    shift 2
    r=$(left); t=$(( cap < r ? cap : r ))
    if [ "$t" -lt 20 ]; then echo "=== SKIPPED $name: only $r s left"; return 0; fi
    echo; echo "=== $name: start $(date +%T), timeout $t s"
    s=$(date +%s)
    timeout -k 10 "$t" "$@"; rc=$?
    echo "=== $name: rc=$rc ($([ $rc = 124 ] && echo 'TIMED OUT' || echo done)), $(( $(date +%s) - s )) s wall"
}

echo "=== machine"
date -u
(nvidia-smi || echo "no nvidia-smi") 2>&1 | tee "$OUT/nvidia-smi.txt"
echo "nproc: $(nproc --all) (cpu_count: $($PY -c "import os; print(os.cpu_count())"))"; uptime; free -g | head -2
$PY -c "import torch, captum; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| captum', captum.__version__)"

# -- (a) bench_gpu -----------------------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then GPU_ARGS=(--quick); else GPU_ARGS=(); fi
part bench_gpu 200 $PY benchmarks/bench_gpu.py --device "$DEVICE" --out "$OUT/gpu" "${GPU_ARGS[@]}"

# -- (b) the default study on the GPU, models cached --------------------------------------------------
STUDY_CFG=/tmp/gpu_session_study.toml
STUDY_DIR=/tmp/gpu_session_study
rm -rf "$STUDY_DIR"
if [ "$QUICK" = 1 ]; then  # the same cached models, a few images and steps
    cat > "$STUDY_CFG" <<EOF
[data]
n_images = 8
[methods.neuromask]
iterations = 5
n_images = 8
[measures]
chance_images = 2
chance_maps = 10
sanity_images = 2
convergence_images = 2
[verdicts]
n_resamples = 50
[run]
device = "$DEVICE"
progress = false
EOF
else  # the default study, device named (it must not fall back to the CPU)
    printf '[run]\ndevice = "%s"\nprogress = false\n' "$DEVICE" > "$STUDY_CFG"
fi
cat "$STUDY_CFG"
BINSIGHT_CACHE="$ROOT/cache/binsight" part study 180 $PY -m binsight study "$STUDY_CFG" --out "$STUDY_DIR"
mkdir -p "$OUT/study"
for f in timings.json verdicts.json run.json models.json; do
    [ -f "$STUDY_DIR/$f" ] && cp "$STUDY_DIR/$f" "$OUT/study/"
done
[ -f "$STUDY_DIR/timings.json" ] && cat "$STUDY_DIR/timings.json"

# -- (b2) the measures on the GPU -----------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then MEASURE_ARGS=(--images 16 --chance-images 2); else MEASURE_ARGS=(); fi
BINSIGHT_CACHE="$ROOT/cache/binsight" part measures 120 $PY benchmarks/bench_measures.py --device "$DEVICE" \
    --json "$OUT/gpu/bench_measures.json" "${MEASURE_ARGS[@]}"

# -- (c) torchrun on the CPU: 1 vs 8 processes ----------------------------------------------------------
if [ "$QUICK" = 1 ]; then SCALE=(--images 4 --iterations 5); RANKS=(1 2); else SCALE=(--images 80); RANKS=(1 8); fi
part scaling-cpu 170 $PY benchmarks/bench_scaling.py --ranks "${RANKS[@]}" --device cpu "${SCALE[@]}"

# -- (d) the same benchmark on the GPU, 1 process ------------------------------------------------------
part scaling-gpu 120 $PY benchmarks/bench_scaling.py --ranks 1 --device "$DEVICE" "${SCALE[@]}"

echo; echo "=== all parts: $(( $(date +%s) - START )) s"
[ -f "$OUT/gpu/bench_gpu.md" ] && cat "$OUT/gpu/bench_gpu.md"
}

main 2>&1 | tee -a "$OUT/session.log"
