"""Image sizes written as 'WIDTHxHEIGHT' on the command line, parsed the same way by every tool."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480). Which sizes are usable is the caller's rule, not this one's."""
    width, separator, height = text.lower().partition("x")
    if not separator or not width.isdigit() or not height.isdigit():
        raise ValueError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(width), int(height)


def size_argument(text: str) -> tuple[int, int]:
    """parse_size as an argparse ``type``: argparse shows an ArgumentTypeError's text as it is."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
