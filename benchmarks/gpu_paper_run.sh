#!/usr/bin/env bash
# The paper's comparison on one CUDA GPU, sized for a few minutes of a lent machine: UCI diabetes (patient level,
# 80/20 split by patient), every model, steps:5000 at batch 1,024 (the budget of the official-code numbers in
# issue 5), one seed; evaluation nearest neighbours on the GPU too. Copies the numbers to $OUT (the device tool's
# folder) or benchmarks/out/gpu-paper/: results.json, results.md, metrics.json, report.md, run.log, gpu.txt.
#
# On this project's lent device machine (the repository travels, ../shared/data does not), from the repo root here:
#   mkdir -p .gpu-data/uci-diabetes-130-us-hospitals
#   cp ../shared/data/uci-diabetes-130-us-hospitals/dataset_diabetes.zip .gpu-data/uci-diabetes-130-us-hospitals/
#   grep -qx '/.gpu-data/' .git/info/exclude || echo '/.gpu-data/' >> .git/info/exclude
#   then the device tool: run(command="bash benchmarks/gpu_paper_run.sh", carry=[".gpu-data"], timeout_s=580)
# Anywhere else with a GPU and ehrdiff's dependencies:
#   DATA_ROOT=/path/to/data bash benchmarks/gpu_paper_run.sh
# Knobs (environment): STEPS (5000), SEEDS (1), MODELS (all six), FRACTIONS (none; e.g. 0.1,0.25,0.5,1), DEVICE (cuda),
# LIMIT_S (500: the experiment is stopped after this many seconds so that whatever it wrote still comes back).
set -uo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-5000}
SEEDS=${SEEDS:-1}
MODELS=${MODELS:-ehrdiff,medgan,emrwgan,corgan,marginals,resample}
LIMIT_S=${LIMIT_S:-500}
DEVICE=${DEVICE:-cuda}
if [ -z "${DATA_ROOT:-}" ]; then
    if [ -d .gpu-data ]; then DATA_ROOT=.gpu-data; else DATA_ROOT=../shared/data; fi
fi
DEST=${OUT:-benchmarks/out/gpu-paper}
WORK=${WORK:-/tmp/ehrdiff-gpu-paper}
mkdir -p "$DEST"
rm -rf "$WORK"

PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi not available"
    "$PY" -c 'import torch, os; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu",
torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "cpus", os.cpu_count())'
} > "$DEST/gpu.txt" 2>&1
cat "$DEST/gpu.txt"

ARGS=(experiment paper --dataset uci-diabetes --models "$MODELS" --seeds "$SEEDS" --budget "steps:$STEPS"
      --batch-size 1024 --device "$DEVICE" --data-root "$DATA_ROOT" -o "$WORK")
[ -n "${FRACTIONS:-}" ] && ARGS+=(--fractions "$FRACTIONS")
echo "ehrdiff ${ARGS[*]}"
start=$(date +%s)
timeout "$LIMIT_S" "$PY" -c 'import sys; from ehrdiff.cli import main; sys.exit(main(sys.argv[1:]))' "${ARGS[@]}" \
    2>&1 | tr '\r' '\n' | grep -v -E '^(training|train [a-z]+): |^[[:space:]]*$' | tee "$DEST/run.log"
status=${PIPESTATUS[0]}
echo "exit status $status after $(( $(date +%s) - start )) s" | tee -a "$DEST/run.log"

for f in results.json results.md report/metrics.json report/report.md; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$DEST/$(basename "$f")"
done
exit "$status"
