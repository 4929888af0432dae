"""The managed (lifecycle) variant of the flow node.

A system manager can then load the model before the robot needs it
(configure), switch the flow on and off without reloading (activate,
deactivate) and give the GPU memory back (cleanup). Everything between the
cameras and the outputs is the same FlowPipeline the plain node uses; this
module only maps the lifecycle transitions onto it:

    configure   read parameters, load the engine, create publishers and diagnostics
    activate    subscribe to the cameras, start the worker (fresh frame history)
    deactivate  unsubscribe, stop the worker; the engine stays loaded
    cleanup     destroy publishers and diagnostics, free the engine
    shutdown    whatever of the above is still held, then the process exits

Parameters are declared at construction, so they can be set (params file,
command line) before configure; run-time parameters also apply while active.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import time
from typing import Any

from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .flow_node import NODE_NAME, SHUTDOWN_TIMEOUT_S, run_node
from .parameters import ConfigurationError, NodeSettings, read_settings
from .pipeline import (
    FlowPipeline,
    create_node_engine,
    declare_node_parameters,
    hint_at_fastdds_profile,
    runtime_parameter_callback,
)
from .unknown_overrides import report_unknown_overrides
from .worker_thread import WorkerThread

FINALIZED_EXIT_DELAY_S = 0.3


def _return_freed_host_memory() -> None:
    """Give the freed engine's host memory back to the OS (glibc keeps it in its arenas)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (musl, macOS): its allocator decides by itself
    libc.malloc_trim(0)


def _release_gpu_cache() -> None:
    """Hand cached CUDA blocks back to the driver, if torch is in use at all."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class NeuFlowLifecycleNode(LifecycleNode):
    """The flow node as a managed node; see the module docstring for the transitions."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("node_name", NODE_NAME), **kwargs)
        declare_node_parameters(self)
        self.settings: NodeSettings | None = None
        self.pipeline: FlowPipeline | None = None
        self._engine: Any = None
        self._finalized_at: float | None = None
        self._worker_thread = WorkerThread()
        """One thread for the worker of every activation (see worker_thread)."""
        self.add_on_set_parameters_callback(
            runtime_parameter_callback(self, lambda: self.pipeline)
        )

    # --- transitions ----------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        report_unknown_overrides(self)
        try:
            settings = read_settings(lambda name: self.get_parameter(name).value)
        except (ConfigurationError, ParameterException) as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        try:
            engine = create_node_engine(self, settings)
        except Exception as error:
            self.get_logger().error(
                f"cannot load the flow engine (backend '{settings.backend}', checkpoint "
                f"'{settings.checkpoint or ''}'): {error}"
            )
            return TransitionCallbackReturn.FAILURE
        self.settings = settings
        self._engine = engine
        self.pipeline = FlowPipeline(self, settings, lambda: self._engine, self._worker_thread)
        self.pipeline.health.engine_inactive()
        hint_at_fastdds_profile(self, settings)
        self.get_logger().info(
            f"configured: {engine.backend} on {engine.device} ({engine.precision}) loaded"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.pipeline is not None, "the lifecycle only activates a configured node"
        self.pipeline.start()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.pipeline is not None, "the lifecycle only deactivates a configured node"
        self._stop_pipeline()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._finalized_at = time.monotonic()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: drop everything, so the node can be configured again."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # --- helpers --------------------------------------------------------------------------

    def _stop_pipeline(self) -> None:
        if self.pipeline is not None and not self.pipeline.stop(SHUTDOWN_TIMEOUT_S):
            self.get_logger().warning(
                f"flow worker still inside an engine call after {SHUTDOWN_TIMEOUT_S} s; "
                "going on without it (its result is dropped)"
            )

    def _close_pipeline(self) -> None:
        if self.pipeline is not None:
            self._stop_pipeline()
            self.pipeline.close(0.0)
            self.pipeline = None

    def _release(self) -> None:
        """Stop and destroy the pipeline, then free the engine (and its GPU memory)."""
        self._close_pipeline()
        if self._engine is not None:
            self._engine = None
            gc.collect()
            _release_gpu_cache()
            _return_freed_host_memory()

    # --- what run_node asks ---------------------------------------------------------------

    def exit_code(self) -> int | None:
        """0 shortly after the shutdown transition: a finalized node can do nothing more.

        The short wait lets the answer to the ChangeState request that finalized
        the node reach its caller before the process exits.
        """
        if self._finalized_at is None:
            return None
        return 0 if time.monotonic() - self._finalized_at >= FINALIZED_EXIT_DELAY_S else None

    def shutdown(self) -> bool:
        """The process is ending: no engine to free (that only slows the exit down)."""
        self._close_pipeline()
        self._worker_thread.close()
        # An earlier deactivation may have left a loop inside an engine call, too.
        return self._worker_thread.wait_idle(0.0)


def main(args: list[str] | None = None) -> int:
    """Run the lifecycle node until Ctrl-C / SIGTERM or the shutdown transition."""
    return run_node(NeuFlowLifecycleNode, args)


if __name__ == "__main__":
    sys.exit(main())
