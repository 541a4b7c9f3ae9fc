#!/usr/bin/env bash
# The paper's comparison on one CUDA GPU, sized for a few minutes of a lent machine: UCI diabetes (patient level,
# 80/20 split by patient), every model (the paper's EHRDiff too), steps:5000 at batch 1,024 (the budget of the official-code numbers in
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
# Knobs (environment): STEPS (5000), SEEDS (1), MODELS (all seven), FRACTIONS (none; e.g. 0.1,0.25,0.5,1), DEVICE
# (cuda), SHARDS (7: training processes side by side on the GPU), LIMIT_S (540: everything is stopped after this many
# seconds so that whatever was written still comes back), TRAIN_S (LIMIT_S - 200: the shards' share of it; the report
# covers the models whose runs all finished by then), THREADS
# (CPU threads of the evaluation; default: the libraries' own).
# First lent run (one process for all models, 2026-11-28): ehrdiff 56 s, ehrdiff-paper 38 s, medgan 135 s, emrwgan
# 237 s of training at 5,000 steps, and the limit came before corgan and the evaluation; hence the shards.
set -uo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-5000}
SEEDS=${SEEDS:-1}
MODELS=${MODELS:-ehrdiff,ehrdiff-paper,medgan,emrwgan,corgan,marginals,resample}
LIMIT_S=${LIMIT_S:-540}
SHARDS=${SHARDS:-7}
TRAIN_S=${TRAIN_S:-$((LIMIT_S - 200))}
DEVICE=${DEVICE:-cuda}
if [ -z "${DATA_ROOT:-}" ]; then
    if [ -d .gpu-data ]; then DATA_ROOT=.gpu-data; else DATA_ROOT=../shared/data; fi
fi
DEST=${OUT:-benchmarks/out/gpu-paper}
WORK=${WORK:-/tmp/ehrdiff-gpu-paper}
mkdir -p "$DEST"
rm -rf "$WORK" "$WORK".shard*.log

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
# the paper's model warms up for the official share of its schedule (20,000 of 280,000 steps), as the official run
[[ ",$MODELS," == *",ehrdiff-paper,"* ]] && ARGS+=(--set "ehrdiff-paper.warmup_steps=$(( STEPS * 20000 / 280000 ))")
[ -n "${FRACTIONS:-}" ] && ARGS+=(--fractions "$FRACTIONS")
EHRDIFF=("$PY" -c 'import sys; from ehrdiff.cli import main; sys.exit(main(sys.argv[1:]))')
echo "ehrdiff ${ARGS[*]}  (runs in $SHARDS parallel shards, then one evaluation)"
start=$(date +%s)
# The small networks leave the GPU mostly idle, so the runs train side by side: one process per shard of the
# plan (--shard I/N), each with a few CPU threads; a shard still running at TRAIN_S is stopped (it resumes later).
for i in $(seq 0 $((SHARDS - 1))); do
    timeout "$TRAIN_S" "${EHRDIFF[@]}" -q "${ARGS[@]}" --shard "$i/$SHARDS" --threads 2 > "$WORK.shard$i.log" 2>&1 &
done
wait
for i in $(seq 0 $((SHARDS - 1))); do cat "$WORK.shard$i.log"; done | tee "$DEST/run.log"
echo "training and sampling: $(( $(date +%s) - start )) s" | tee -a "$DEST/run.log"
# one report of the models whose runs all finished: a run a shard did not finish would otherwise resume training
# here and could use up the time left before anything is evaluated
finished=$("$PY" - "$WORK" "$MODELS" "$SEEDS" "${FRACTIONS:-1}" <<'EOF'
import sys
from ehrdiff.experiments.runner import run_finished, run_folder
work, models, seeds, fractions = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4].split(",")
shares = {1.0} | {float(f) for f in fractions if float(f) < 1}
print(",".join(m for m in models if all(run_finished(run_folder(work, m, f, s)) for f in shares for s in range(seeds))))
EOF
)
for m in ${MODELS//,/ }; do
    [[ ",$finished," == *",$m,"* ]] || echo "not finished within TRAIN_S ($TRAIN_S s), left out of the report: $m" \
        | tee -a "$DEST/run.log"
done
if [ -z "$finished" ]; then echo "no model finished; nothing to evaluate" | tee -a "$DEST/run.log"; exit 1; fi
for i in "${!ARGS[@]}"; do [ "${ARGS[$i]}" = --models ] && ARGS[$((i + 1))]=$finished; done
left=$(( LIMIT_S - ($(date +%s) - start) ))
[ -n "${THREADS:-}" ] && ARGS+=(--threads "$THREADS")
timeout "$left" "${EHRDIFF[@]}" "${ARGS[@]}" --resume 2>&1 | tr '\r' '\n' | \
    grep -v -E '^(training|train [a-z]+): |^[[:space:]]*$' | tee -a "$DEST/run.log"
status=${PIPESTATUS[0]}
echo "exit status $status after $(( $(date +%s) - start )) s" | tee -a "$DEST/run.log"

for f in results.json results.md report/metrics.json report/report.md; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$DEST/$(basename "$f")"
done
exit "$status"
