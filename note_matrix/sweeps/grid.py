"""The grid of a sweep: train.py flags and the values each takes, checked against train.py's own parser.

A grid key is a train.py flag without its dashes (``units``, ``lr-schedule``; ``lr_schedule``
is read the same); its values are kept as typed (``0`` stays ``0``, not ``0.0``), so a point's
folder name and its command say what the user wrote. A switch such as ``chord-symbols`` takes
``true`` and ``false``: the flag given or not.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from note_matrix.errors import NoteMatrixError

# train.py flags that sweep.py sets itself for every point (argparse destinations)
MANAGED = {
    "logdir": "sweep.py's --logdir and --name choose the sweep folder",
    "run_name": "each point's run folder is named after its settings",
    "resume": "a re-run of the same sweep command continues it",
    "quiet": "every point trains with --quiet",
    "help": "not a setting",
}
SWITCH_VALUES = ("true", "false")
# train.py flags that belong to one value of a swept key: given after --, they reach only the
# points where the key takes that value (a constant-rate point gets no --lr-min, a cyclic one no
# --learning-rate), so one command sweeps a setting and its companions
BELONGS_TO = {
    "--lr-min": ("lr-schedule", "cyclic"),
    "--lr-max": ("lr-schedule", "cyclic"),
    "--cycle-steps": ("lr-schedule", "cyclic"),
    "--learning-rate": ("lr-schedule", "constant"),
}
MAX_NAME_BYTES = 255  # a folder name
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


class SweepError(NoteMatrixError):
    """A grid, train.py flag or sweep folder that cannot be swept, said in one line."""


@dataclass(frozen=True)
class Key:
    """One swept flag: ``name`` without dashes (``lr-schedule``), its ``option`` (``--lr-schedule``),
    the ``values`` as typed, and ``kind``: ``int``, ``float``, ``bool`` (a switch) or ``str``."""

    name: str
    option: str
    values: tuple[str, ...]
    kind: str

    def flags(self, value: str) -> list[str]:
        """The train.py arguments that set this key to ``value`` (``--units=50``; a switch: given or not)."""
        if self.kind == "bool":
            return [self.option] if value == "true" else []
        return [f"{self.option}={value}"]

    def typed(self, value: str) -> int | float | bool | str:
        """``value`` as train.py reads it (for TensorBoard's HParams, which sorts numbers as numbers)."""
        return {"int": int, "float": float, "bool": lambda text: text == "true"}.get(self.kind, str)(value)

    def to_json(self) -> dict:
        return {"name": self.name, "option": self.option, "values": list(self.values), "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict) -> Key:
        return cls(data["name"], data["option"], tuple(data["values"]), data["kind"])


@dataclass(frozen=True)
class Point:
    """One setting of every key: ``values`` is ``((key, value), ...)`` in the grid's order."""

    values: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """``units=50,dropout=0``: the point as the command line wrote it."""
        return ",".join(f"{key}={value}" for key, value in self.values)

    @property
    def name(self) -> str:
        """The run folder's name: the label, with anything but letters, digits and ``._+=,-`` as ``_``."""
        return _UNSAFE.sub("_", self.label)

    def params(self) -> dict[str, str]:
        return dict(self.values)


@dataclass(frozen=True)
class Grid:
    """The swept keys; its points are every combination of their values (the cartesian product)."""

    keys: tuple[Key, ...]

    def points(self) -> list[Point]:
        names = [key.name for key in self.keys]
        return [Point(tuple(zip(names, values))) for values in itertools.product(*(key.values for key in self.keys))]

    def point(self, params: dict[str, str]) -> Point:
        """The point of Optuna's ``params`` (``{key: value}``)."""
        return Point(tuple((key.name, params[key.name]) for key in self.keys))

    def flags(self, point: Point) -> list[str]:
        keys = {key.name: key for key in self.keys}
        return [flag for name, value in point.values for flag in keys[name].flags(value)]

    def fixed_flags(self, point: Point, fixed: list[str]) -> list[str]:
        """``fixed`` (the flags after ``--``) less those that belong to another value of a key
        this point sets (``BELONGS_TO``); a flag's value is its next argument unless written ``--flag=value``."""
        params = point.params()
        kept, skip = [], False
        for index, flag in enumerate(fixed):
            if skip:
                skip = False
                continue
            option, equals, _ = flag.partition("=")
            key, value = BELONGS_TO.get(option, (None, None))
            if key in params and params[key] != value:
                skip = not equals and index + 1 < len(fixed)
                continue
            kept.append(flag)
        return kept

    def search_space(self) -> dict[str, list[str]]:
        """Optuna's ``GridSampler`` search space: each key's values, as strings."""
        return {key.name: list(key.values) for key in self.keys}

    def to_json(self) -> list[dict]:
        return [key.to_json() for key in self.keys]

    @classmethod
    def from_json(cls, data: list[dict]) -> Grid:
        return cls(tuple(Key.from_json(key) for key in data))


def parse_grid(specs: list[str], build_parser: Callable[[], argparse.ArgumentParser]) -> Grid:
    """The grid of ``specs`` (``["units=50,100", "dropout=0,0.1"]``), every key a train.py flag
    and every value one its parser accepts; ``SweepError`` naming the spec and the reason otherwise.
    ``build_parser``: train.py's ``build_parser``."""
    parser = _raising(build_parser())
    options = _options(parser)
    keys = []
    for spec in specs:
        key = _parse_key(spec, options, parser)
        if any(key.name == other.name for other in keys):
            raise SweepError(f"--grid {spec}: {key.name} is given twice")
        keys.append(key)
    if not keys:
        raise SweepError("--grid needs at least one KEY=V1,V2,...")
    grid = Grid(tuple(keys))
    _check_names(grid)
    return grid


def check_fixed_flags(flags: list[str], grid: Grid, build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """``SweepError`` unless ``flags`` (the train.py flags after ``--``) parse with train.py's parser,
    leave out the flags sweep.py sets itself, and set none of the grid's keys."""
    parser = _raising(build_parser())
    try:
        parser.parse_args(flags)
    except SweepError as error:
        raise SweepError(f"the train.py flags after --: {error}") from None
    given = vars(_given_parser(build_parser()).parse_args(flags))
    options = _options(parser)
    for dest in given:
        if dest in MANAGED:
            raise SweepError(
                f"the train.py flags after -- may not set {options[dest].option_strings[-1]}: {MANAGED[dest]}"
            )
    for key in grid.keys:
        if _dest(options, key.option) in given:
            raise SweepError(f"{key.option} is both a grid key and a flag after --; give it once")


def _parse_key(spec: str, options: dict[str, argparse.Action], parser: argparse.ArgumentParser) -> Key:
    name, equals, text = spec.partition("=")
    name = name.strip().lstrip("-").replace("_", "-")
    if not equals or not name or not text:
        raise SweepError(f"--grid {spec}: expected KEY=V1,V2,... (e.g. units=50,100)")
    option = f"--{name}"
    action = options.get(_dest(options, option))
    if action is None:
        raise SweepError(f"--grid {spec}: train.py has no flag {option} (see python train.py --help)")
    if action.dest in MANAGED:
        raise SweepError(f"--grid {spec}: {option} cannot be swept: {MANAGED[action.dest]}")
    values = tuple(value.strip() for value in text.split(","))
    if "" in values:
        raise SweepError(f"--grid {spec}: an empty value")
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise SweepError(f"--grid {spec}: {repeated[0]} is given twice")
    key = Key(name, option, values, _kind(action))
    for value in values:
        _check_value(spec, key, value, parser)
    return key


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "bool"
    return {int: "int", float: "float"}.get(action.type, "str")


def _check_value(spec: str, key: Key, value: str, parser: argparse.ArgumentParser) -> None:
    """``SweepError`` unless ``parser`` (train.py's, raising: ``_raising``) accepts the key set to ``value``."""
    if key.kind == "bool" and value not in SWITCH_VALUES:
        raise SweepError(f"--grid {spec}: {key.option} is a switch; its values are true and false, not {value!r}")
    try:
        parser.parse_args(key.flags(value))
    except SweepError as error:
        raise SweepError(f"--grid {spec}: {error}") from None


def _check_names(grid: Grid) -> None:
    seen = {}
    for point in grid.points():
        if len(point.name.encode()) > MAX_NAME_BYTES:
            raise SweepError(
                f"the point {point.label} makes a folder name over {MAX_NAME_BYTES} bytes; sweep fewer "
                "or shorter values"
            )
        if point.name in seen:
            raise SweepError(f"the points {seen[point.name]} and {point.label} would share the folder {point.name}")
        seen[point.name] = point.label


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """train.py's flags by destination (argparse has no public list of its arguments)."""
    return {action.dest: action for action in parser._actions if action.option_strings}


def _dest(options: dict[str, argparse.Action], option: str) -> str | None:
    return next((dest for dest, action in options.items() if option in action.option_strings), None)


def _raising(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser``, raising ``SweepError`` with argparse's message where it would print usage and exit."""

    def error(message: str):
        raise SweepError(message)

    parser.error = error
    return parser


def _given_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` with every default suppressed: its namespace holds only the flags written."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return parser
