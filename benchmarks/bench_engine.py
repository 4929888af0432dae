"""Engine timing only: ``neuflow-bench --no-graph`` from a source checkout, without ROS 2.

Kept for those who ran this script before the benchmark became a command;
every option of neuflow-bench is accepted (``--help``), for example

    PYTHONPATH=. python benchmarks/bench_engine.py --backends dis neuflow_v1 --runs 5
"""

import pathlib
import sys

from neuflow_ros.tools.bench_tool import main

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    sys.exit(main(["--no-graph", "--out", str(RESULTS), *sys.argv[1:]]))
