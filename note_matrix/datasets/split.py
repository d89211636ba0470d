"""Splitting a dataset's files into train / validation / test, and the report of skipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from note_matrix.errors import DatasetError


def split_by_file(
    keys: list[str], *, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Split file keys into train / validation / test, seeded, each part sorted.

    Each non-zero fraction gets at least one file when there are at least three files,
    so a small dataset still validates; training always keeps at least one file.
    """
    if not 0 <= validation_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError("validation and test fractions must lie in [0, 1)")
    keys = sorted(keys)
    order = np.random.default_rng(seed).permutation(len(keys))

    def count(fraction: float) -> int:
        if fraction == 0 or len(keys) < 3:
            return 0
        return max(1, int(round(fraction * len(keys))))

    n_test, n_validation = count(test_fraction), count(validation_fraction)
    if n_test + n_validation >= len(keys):
        raise DatasetError(
            f"{len(keys)} usable files cannot be split into train/validation/test with fractions "
            f"{validation_fraction} and {test_fraction}"
        )
    shuffled = [keys[i] for i in order]
    return {
        "train": sorted(shuffled[n_test + n_validation :]),
        "validation": sorted(shuffled[n_test : n_test + n_validation]),
        "test": sorted(shuffled[:n_test]),
    }


def write_skip_report(path: Path, skipped: dict[str, str]) -> None:
    """One line per skipped file: ``<key>\\t<reason>``."""
    lines = [f"{key}\t{reason}" for key, reason in sorted(skipped.items())]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
