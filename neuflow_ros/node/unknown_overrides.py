"""Parameter overrides the node does not declare, reported instead of silently dropped.

rclpy ignores an override (params file, `-p`) whose name was never declared,
so `-p vins_features:=true` for `tracking.vins_features` does nothing and
says nothing. The node compares its overrides with what it declares and
warns, once per start-up (or configure), about each one that looks meant for
it: a name under one of its namespaces (`tracking.`) or close to one of its
parameters. Anything else, e.g. a shared `/**` block for other nodes, stays
quiet: those overrides are legitimately not ours.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rclpy.node import Node

from .parameters import PARAMETERS

SIMILARITY_CUTOFF = 0.8
"""difflib ratio from which an unknown name counts as a typo of a declared one."""


@dataclass(frozen=True)
class UnknownOverride:
    """An override nothing reads, with the declared parameter it most likely meant."""

    name: str
    meant: str

    def message(self) -> str:
        return (
            f"parameter override '{self.name}' is not a parameter of this node and is ignored; "
            f"did you mean '{self.meant}'? (If it is meant for another node, ignore this.)"
        )


def _last_segment(name: str) -> str:
    return name.rpartition(".")[2]


def _closest(name: str, candidates: Iterable[str], cutoff: float) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _meant_parameter(name: str, declared: tuple[str, ...]) -> str | None:
    """The declared parameter an unknown name most likely meant; None: not meant for us."""
    namespace, dot, _ = name.partition(".")
    if dot and any(p.startswith(f"{namespace}.") for p in declared):
        return _closest(name, declared, 0.0)
    by_name = _closest(name, declared, SIMILARITY_CUTOFF)
    if by_name:
        return by_name
    if dot:
        return None
    # A parameter given without its namespace (vins_features for tracking.vins_features);
    # only a segment that names one parameter, so 'depth' does not guess between two.
    segments = [_last_segment(p) for p in declared]
    unique = {_last_segment(p): p for p in declared if segments.count(_last_segment(p)) == 1}
    segment = _closest(name, unique, SIMILARITY_CUTOFF)
    return unique[segment] if segment else None


def unknown_overrides(
    override_names: Iterable[str], is_declared: Callable[[str], bool],
    declared: tuple[str, ...] = tuple(spec.name for spec in PARAMETERS),
) -> list[UnknownOverride]:
    """The overrides that are not declared but look meant for this node, sorted by name."""
    found = []
    for name in sorted(set(override_names)):
        if is_declared(name):
            continue
        meant = _meant_parameter(name, declared)
        if meant is not None:
            found.append(UnknownOverride(name, meant))
    return found


def _override_names(node: Node) -> Iterable[str] | None:
    """Names of the overrides rcl resolved for this node (params files, -p, constructor).

    rclpy keeps them in Node._parameter_overrides on Humble, Jazzy and Kilted
    and has no public accessor; without the attribute the check is skipped.
    """
    overrides: Any = getattr(node, "_parameter_overrides", None)
    return overrides.keys() if isinstance(overrides, Mapping) else None


def report_unknown_overrides(node: Node) -> list[UnknownOverride]:
    """One WARN line per override that looks meant for the node but is not declared."""
    names = _override_names(node)
    if names is None:
        node.get_logger().debug("this rclpy does not expose parameter overrides; not checked")
        return []
    found = unknown_overrides(names, node.has_parameter)
    for override in found:
        node.get_logger().warning(override.message())
    return found
