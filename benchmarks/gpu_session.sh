#!/usr/bin/env bash
# Every GPU check in one go, on a machine with CUDA and PyTorch but no ROS (the
# engine is ROS-free): the review's five checks (gpu_checks.py), the CUDA tests,
# then the memory of a pass (counted and measured) and every mode of
# bench_modes.py. Logs, JSON and plot go to OUT_DIR.
#
#   benchmarks/gpu_session.sh OUT_DIR [FRAMES_DIR]
#
# FRAMES_DIR holds the robot frames (.jpg) the fp16 error is measured on; the
# default is the shared robot sequence beside the repository. gpu_checks.py is
# taken from GPU_CHECKS, else .gpu_checks/gpu_checks.py, else
# ../shared/tools/gpu_checks.py. Where only the repository travels to the GPU
# machine, copy both into ignored folders of it first and carry them:
#   echo /.gpu_checks/ >> .git/info/exclude; echo /.robot_frames/ >> .git/info/exclude
#   mkdir -p .gpu_checks && cp ../shared/tools/gpu_checks.py .gpu_checks/
#   cp -r ../shared/data/robot_sequence .robot_frames   # 3 MB
# and run benchmarks/gpu_session.sh "$OUT" .robot_frames (about 6 + 2 + 6 minutes
# on an H200; each part has a time limit so one hang cannot take the rest).
# GPU_PARTS picks parts (default "checks tests bench"): a machine that allows ten
# minutes per command runs "checks tests" and "bench" as two commands.
# BENCH_ARGS adds options to bench_modes.py (e.g. "--runs 20" when time is short).
# Node end to end on the GPU needs ROS as well: neuflow-bench --backends
# neuflow_v2 --device cuda --precision fp16 after `make setup`.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_session.sh OUT_DIR [FRAMES_DIR]}
frames=${2:-../shared/data/robot_sequence}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(),
      torch.cuda.get_device_properties(0).total_memory // 2**20, 'MiB')" \
    | tee "$out/gpu.txt" || exit 1

parts=" ${GPU_PARTS:-checks tests bench} "
wants() { [[ $parts == *" $1 "* ]]; }

checks=${GPU_CHECKS:-}
for candidate in .gpu_checks/gpu_checks.py ../shared/tools/gpu_checks.py; do
    [[ -z $checks && -f $candidate ]] && checks=$candidate
done
if ! wants checks; then
    :
elif [[ -n $checks ]]; then
    # The review's script predates the package layout: point its imports at it.
    adapted=$(mktemp -d)/gpu_checks.py
    sed -e 's/neuflow_ros\.engine_benchmark import/neuflow_ros.tools.engine_benchmark import/' \
        -e 's/neuflow_ros\.engine import/neuflow_ros.flow.engine import/' \
        -e 's/neuflow_ros\.synthetic_sequence import/neuflow_ros.imaging.synthetic_sequence import/' \
        "$checks" > "$adapted"
    timeout 600 python3 "$adapted" "$out" 2>&1 | tee "$out/gpu_checks.log" || status=1
else
    echo "gpu_checks.py not found (GPU_CHECKS, .gpu_checks/, ../shared/tools/): skipped" \
        | tee "$out/gpu_checks.log"
    status=1
fi

if wants tests; then
    timeout 900 python3 -m pytest -q -rs -p no:cacheprovider \
        test/test_cuda_graphs.py test/test_graphed_functions.py test/test_engine.py \
        test/test_models.py test/test_streaming.py test/test_warm_up_plan.py \
        test/test_flow_worker.py 2>&1 | tee "$out/tests.log" || status=1
fi

if wants bench; then
    # Seconds: the counted working memory of a pass next to PyTorch's measured peak.
    timeout 300 python3 benchmarks/pass_memory.py --device cuda --precisions fp16 --out "$out" \
        2>&1 | tee "$out/pass_memory.log" || status=1
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
    timeout 900 python3 benchmarks/bench_modes.py --device cuda --frames "$frames" --out "$out" \
        ${BENCH_ARGS:-} 2>&1 | tee "$out/bench_modes.log" || status=1
fi
exit $status
