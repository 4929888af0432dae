# One-command environment, build, test, demo and benchmarks for machines without a
# ROS 2 distro. On a real ROS 2 install use rosdep + colcon directly (README).

PYTHON ?= python3
VENV := .venv
ACTIVATE := . $(VENV)/bin/activate
# Sourced after the venv: the package's own setup file from colcon.
WITH_ROS := $(ACTIVATE) && export AMENT_PREFIX_PATH="$$VIRTUAL_ENV$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}" && . install/setup.sh
STAMP := $(VENV)/.requirements-installed

.PHONY: setup build test lint demo bench clean

setup: $(STAMP) build

$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	touch $(VENV)/COLCON_IGNORE
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	touch $@

build: $(STAMP)
	$(ACTIVATE) && export AMENT_PREFIX_PATH="$$VIRTUAL_ENV" && \
		colcon --log-base log build --paths . --symlink-install \
		--cmake-args -DBUILD_TESTING=OFF

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint build
	$(WITH_ROS) && pytest

# Camera replay -> node -> consumer on a synthetic scene with known motion (after
# `make setup`); picture and summary in demo_output/. E.g. DEMO_ARGS="--frames 300",
# DEMO_ARGS="path/to/video.mp4" or DEMO_ARGS="--checkpoint neuflow_mixed.pth".
demo: build
	$(WITH_ROS) && neuflow-demo $(DEMO_ARGS)

# Results (JSON, PNG plots) go to benchmarks/results/; e.g. BENCH_ARGS="--quick".
bench: build
	$(WITH_ROS) && neuflow-bench --out benchmarks/results $(BENCH_ARGS)

clean:
	rm -rf build install log
