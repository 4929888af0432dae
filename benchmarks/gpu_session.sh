#!/usr/bin/env bash
# Issue 7's GPU measurements in one go, on a machine with CUDA and PyTorch but no ROS
# (the engine is ROS-free): the engine/model/streaming tests with their CUDA cases,
# then every mode of bench_modes.py. Logs, JSON and plot go to OUT_DIR.
#
#   benchmarks/gpu_session.sh OUT_DIR [FRAMES_DIR]
#
# FRAMES_DIR holds the robot frames (.jpg) the fp16 error is measured on; the
# default is the shared robot sequence beside the repository. Where only the
# repository travels to the GPU machine, copy the frames into an ignored folder
# of it first (cp -r ../shared/data/robot_sequence .robot_frames, 3 MB) and pass
# that folder. Node end to end on the GPU needs ROS as well: neuflow-bench
# --backends neuflow_v2 --device cuda --precision fp16 after `make setup`.
set -euo pipefail
out=${1:?usage: benchmarks/gpu_session.sh OUT_DIR [FRAMES_DIR]}
frames=${2:-../shared/data/robot_sequence}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee "$out/gpu.txt"
python3 -m pytest -q -rs -p no:cacheprovider \
    test/test_engine.py test/test_models.py test/test_streaming.py 2>&1 | tee "$out/tests.log"
python3 benchmarks/bench_modes.py --device cuda --frames "$frames" --out "$out" 2>&1 \
    | tee "$out/bench_modes.log"
