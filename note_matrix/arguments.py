"""What the scripts' argument parsers share: the run to use (``--model``, ``--logdir``) and value
types (a bounded integer, a temperature, a list of temperatures).

Each raises ``argparse.ArgumentTypeError``, so a bad value is argparse's own one-line error
(``generate.py: error: argument --length: must be between 1 and 100,000``) and exit status 2.
"""

from __future__ import annotations

import argparse
import math


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` (a run folder or its model.keras) and ``--logdir`` (where the newest run is found)."""
    parser.add_argument("--model", default=None,
                        help="run folder, or its model.keras (default: the newest run in --logdir)")
    parser.add_argument("--logdir", default="logs", help="where runs are (default: %(default)s)")


def bounded_int(low: int, high: int):
    """A type for integers from ``low`` to ``high``."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high:,}")
        return value

    return parse


def temperature(text: str) -> float:
    """A sampling temperature: finite, 0 (the most likely value) or more."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError("must be a finite number, 0 or more")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds: finite and above 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("must be a finite number of seconds above 0")
    return value


def temperatures(text: str) -> tuple[float, ...]:
    """``"0.5,0.7,1.0"`` -> ``(0.5, 0.7, 1.0)``: each above 0 and finite."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not all(0 < value < float("inf") for value in values):
        raise argparse.ArgumentTypeError("every temperature must be a finite number above 0")
    return values
