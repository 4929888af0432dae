# One-command environment, build, test and benchmarks for machines without a ROS 2
# distro. On a real ROS 2 install use rosdep + colcon directly (README).

PYTHON ?= python3
VENV := .venv
ACTIVATE := . $(VENV)/bin/activate
# Sourced after the venv: the package's own setup file from colcon.
WITH_ROS := $(ACTIVATE) && export AMENT_PREFIX_PATH="$$VIRTUAL_ENV$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}" && . install/setup.sh
STAMP := $(VENV)/.requirements-installed

.PHONY: setup build test lint bench clean

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
		--event-handlers console_cohesion+ summary+ --cmake-args -DBUILD_TESTING=OFF

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint build
	$(WITH_ROS) && pytest

bench:
	$(WITH_ROS) && python benchmarks/bench_engine.py $(BENCH_ARGS)

clean:
	rm -rf build install log
