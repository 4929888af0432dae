# One-command environment, build, test, demo and benchmarks for machines without a
# ROS 2 distro. On a real ROS 2 install use rosdep + colcon directly (README).
#
# DISTRO picks the ROS 2 release (kilted, the default, or jazzy). Each has its
# own environment and colcon output, so both live side by side in one checkout:
# kilted in .venv/ build/ install/, jazzy in .venv-jazzy/ build-jazzy/ install-jazzy/.

PYTHON ?= python3
DISTRO ?= kilted
ifeq ($(DISTRO),kilted)
SUFFIX :=
else ifeq ($(DISTRO),jazzy)
SUFFIX := -jazzy
else
$(error DISTRO=$(DISTRO): choose kilted or jazzy)
endif
VENV := .venv$(SUFFIX)
REQUIREMENTS := requirements$(SUFFIX).txt
BUILD_BASE := build$(SUFFIX)
INSTALL_BASE := install$(SUFFIX)
ACTIVATE := . $(VENV)/bin/activate
# Sourced after the venv: the package's own setup file from colcon.
WITH_ROS := $(ACTIVATE) && export AMENT_PREFIX_PATH="$$VIRTUAL_ENV$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}" && . $(INSTALL_BASE)/setup.sh
STAMP := $(VENV)/.requirements-installed

.PHONY: setup build test lint demo bench clean

setup: $(STAMP) build

$(STAMP): $(REQUIREMENTS) requirements-common.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	touch $(VENV)/COLCON_IGNORE
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

build: $(STAMP)
	$(ACTIVATE) && export AMENT_PREFIX_PATH="$$VIRTUAL_ENV" && \
		colcon --log-base log build --paths . --symlink-install \
		--build-base $(BUILD_BASE) --install-base $(INSTALL_BASE) \
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
	rm -rf $(BUILD_BASE) $(INSTALL_BASE) log
