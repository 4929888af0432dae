"""The calls that prepare an engine for everything a camera setup will submit.

On CUDA a graph is captured at a signature's third call; a signature first
met mid-flight would cost a capture (and cuDNN autotuning) while frames wait.
What decides a signature: how many cameras on one network grid are ready
at once (1..cameras), how many of their streams start (both images of a
pair go through the backbone) rather than continue (only the new one does),
and whether backward flow is computed (the node may switch it at run time).
The plan visits each combination's signatures ``repeats`` times, enough to
get them captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmUpCall:
    """One engine call on ``cameras`` streams, the first ``starting`` of them starting afresh."""

    cameras: int
    backward: bool
    starting: int


def warm_up_calls(
    cameras: int, backward_settings: Sequence[bool], repeats: int
) -> list[WarmUpCall]:
    """Per camera count: all streams starting, the steady state under each backward
    setting, then some streams starting while the others continue (a camera joins
    or restarts).

    The backbone sees ``count + starting`` images, so these are all its batch
    sizes; the pairwise part sees ``2 * count`` frames whatever starts, so only
    the backward settings multiply its signatures.
    """
    if cameras < 1 or repeats < 1 or not backward_settings:
        raise ValueError(
            f"need cameras >= 1, repeats >= 1 and a backward setting, got {cameras}, {repeats}, "
            f"{list(backward_settings)}"
        )
    first = backward_settings[0]
    calls: list[WarmUpCall] = []
    for count in range(1, cameras + 1):
        calls += [WarmUpCall(count, first, starting=count)] * repeats
        for backward in backward_settings:
            calls += [WarmUpCall(count, backward, starting=0)] * repeats
        for starting in range(1, count):
            calls += [WarmUpCall(count, first, starting=starting)] * repeats
    return calls
