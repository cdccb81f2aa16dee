#!/usr/bin/env bash
# The GPU rows of benchmarks/README.md in one command, for a lent GPU machine.
#
# Here first (once per session; .whl/ is ignored by git):
#     .venv/bin/python benchmarks/gpu_wheels.py        # the science stack as cp312 wheels
# Then, through the device tool, with carry [".whl"] and a timeout that leaves room:
#     bash benchmarks/gpu_run.sh check relax model phonons kappa   # timeout_s 580 (the default rows)
#
# Rows: check (GPU against CPU, float64), model (model_speed.py: esen-flows only, fairchem-core
# cannot be installed beside the device's torch), relax (relax_throughput.py, 100 structures,
# against atomate2 and the ASE loop on the same GPU), phonons and kappa (--quick; both also time
# their random-displacement side: speedup_random_vs_atomate2, speedup_random_vs_phono3py). Every row runs
# under its own time limit; its log and a summary of the JSON last lines go to $OUT (or
# /tmp/gpu-out when OUT is unset). All rows share BUDGET seconds (default 540, to fit one
# device call of 10 minutes): a row's limit is cut to what is left, and a row with under 30 s
# left is skipped. The exit status is the number of rows that failed or were skipped (100:
# the wheels did not install).
#
# DEVICE=cpu QUICK=1 PYTHON=... runs the same rows small on a CPU: a dry run of the wheels in a
# bare Python before spending device time (benchmarks/METHODS.md, "GPU rows in one call").
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed" >&2; exit 100; }
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no .whl/ here: using the packages installed in $PY" >&2
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
 "$PY" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
) | tee "$OUT/device.txt"

DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET=${BUDGET:-540}   # seconds for all rows: each row's limit is cut to what is left
t0=$(date +%s)
: > "$OUT/summary.jsonl"
small=()
[ "$QUICK" = 1 ] && small=(--quick)
rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=(check relax model phonons kappa)  # most important first
failed=0
for row in "${rows[@]}"; do
    case "$row" in
        check)   limit=120; cmd=(benchmarks/check_device.py --device "$DEVICE") ;;
        model)   limit=240; cmd=(benchmarks/model_speed.py --device "$DEVICE" --fairchem-python none)
                 [ "$QUICK" = 1 ] && cmd+=(--quick --configs small) ;;
        relax)   limit=420; cmd=(benchmarks/relax_throughput.py --device "$DEVICE" --skip torch-sim "${small[@]}") ;;
        phonons) limit=300; cmd=(benchmarks/phonons.py --device "$DEVICE" --quick) ;;
        kappa)   limit=300; cmd=(benchmarks/kappa.py --device "$DEVICE" --quick) ;;
        *) echo "unknown row: $row (check, model, relax, phonons, kappa)" >&2; failed=$((failed + 1)); continue ;;
    esac
    left=$(( BUDGET - ($(date +%s) - t0) - 10 ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 30 ]; then
        echo "== $row: skipped, ${left} s of the ${BUDGET} s budget left"
        printf '{"row": "%s", "exit": null, "result": "skipped: budget"}\n' "$row" >> "$OUT/summary.jsonl"
        failed=$((failed + 1)); continue
    fi
    echo "== $row: ${cmd[*]} (limit ${limit} s)"
    start=$(date +%s)
    timeout -k 10 "$limit" "$PY" "${cmd[@]}" > "$OUT/$row.log" 2>&1
    rc=$?
    tail -n 25 "$OUT/$row.log"
    echo "== $row: exit $rc after $(( $(date +%s) - start )) s"
    [ $rc -ne 0 ] && failed=$((failed + 1))
    last=$(grep '^{' "$OUT/$row.log" | tail -n 1)
    if [ -n "$last" ] && "$PY" -c 'import json, sys; json.loads(sys.argv[1])' "$last" 2> /dev/null; then
        printf '{"row": "%s", "exit": %d, "result": %s}\n' "$row" "$rc" "$last"
    else
        printf '{"row": "%s", "exit": %d, "result": null}\n' "$row" "$rc"
    fi >> "$OUT/summary.jsonl"
done
exit $failed
