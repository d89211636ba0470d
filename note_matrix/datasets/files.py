"""What a dataset is once found: its name, its folder and the keys of its files or tunes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DatasetFiles:
    """The files of a dataset. ``keys`` are paths relative to ``root``, POSIX style."""

    name: str
    root: Path
    keys: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # key -> reason

    def path(self, key: str) -> Path:
        return self.root / key


@dataclass
class TuneFiles(DatasetFiles):
    """The tunes of the ``.abc`` files under ``root`` (``datasets.tunes``): key ``<file>:<n>`` is
    tune ``n`` (from 1) of ``<file>``, its text in a file of its own under ``tunes_root``;
    ``skipped`` holds the ``.abc`` files that gave no tune, by file key."""

    tunes_root: Path = Path()

    def path(self, key: str) -> Path:
        file, _, number = key.rpartition(":")
        return self.tunes_root / file / f"{number}.abc"
