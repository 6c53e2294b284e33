#!/usr/bin/env bash
# The study as `make study` runs it:  bash scripts/study.sh VENV [arguments of `binsight study`...]
#
# Without a GPU it runs as one process per CPU core, one thread each (torchrun, gloo): on this project's
# 2-core machine the default study with cached models took 557 s that way against 1,099 s as one process
# of two threads (README, "Measured numbers"), and with one thread per process its maps are the same on
# any number of cores. With a GPU it runs as one process. NPROC=K sets the number of processes
# (NPROC=1: a plain `binsight study`).
set -euo pipefail
venv="$1"
shift
py="$venv/bin/python"
cores='len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)'
n="${NPROC:-$("$py" -c "import os, torch; print(1 if torch.cuda.is_available() else $cores)")}"
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
    echo "scripts/study.sh: NPROC must be a positive whole number of processes, got '$n' (e.g. NPROC=2)" >&2
    exit 2
fi
if [ "$n" -eq 1 ]; then
    exec "$venv/bin/binsight" study "$@"
fi
echo "the study runs on $n processes of one thread each (torchrun); NPROC=1 runs it as one process"
export OMP_NUM_THREADS=1
exec "$py" -m torch.distributed.run --standalone --nproc-per-node="$n" -m binsight study "$@"
