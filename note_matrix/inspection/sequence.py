"""The token sequence to inspect: a file's own tokens, or tokens the run's model generates.

``file_tokens`` encodes a file (MIDI, or ABC text) with the run's representation. For
generation, ``primer_tokens`` turns the primer into tokens: ``<start>`` and then the
``--prime`` text, character by character, a character the vocabulary lacks as ``<unk>``;
``generated_tokens`` appends what the model writes after it with the project's carried-state
generator (``note_matrix.generation``), up to and including the first ``<end>``.
"""

from __future__ import annotations

import os

import numpy as np

from note_matrix.inspection import InspectionError


def file_tokens(representation, path: str | os.PathLike, length: int) -> np.ndarray:
    """The first ``length`` tokens of the file at ``path``, int32 ``(steps,)``; ``MidiError`` for a
    file the representation cannot read, ``InspectionError`` for one with no tokens."""
    steps = representation.encode(path).steps
    if len(steps) == 0:
        raise InspectionError(f"{path}: no tokens to inspect (no notes, or no tune)")
    return np.asarray(steps[:length, 0], dtype=np.int32)


def primer_tokens(labels: list[str], prime: str = "") -> np.ndarray:
    """``<start>`` and the characters of ``prime`` as token ids of ``labels``, int32 ``(steps,)``.

    ``InspectionError`` when the vocabulary has no ``<start>`` (say which file to read
    instead), or a character of ``prime`` is neither in it nor replaceable by ``<unk>``.
    """
    ids = {label: token for token, label in enumerate(labels)}
    if "<start>" not in ids:
        raise InspectionError("this run's tokens have no <start> to generate from; pass --text FILE, a file "
                              "of its kind, to inspect that file's tokens")
    tokens = [ids["<start>"]]
    for character in prime:
        if character not in ids and "<unk>" not in ids:
            raise InspectionError(f"--prime: {character!r} is not in the run's vocabulary")
        tokens.append(ids.get(character, ids.get("<unk>")))
    return np.array(tokens, dtype=np.int32)


def generated_tokens(model, representation, head, primer: np.ndarray, length: int, labels: list[str], *,
                     sampling=None, progress: bool = True) -> np.ndarray:
    """``primer`` and up to ``length`` tokens the model generates after it, stopping after the first
    ``<end>``: int32 ``(steps,)``. ``sampling``: a ``generation.Sampling``, or None for argmax."""
    from note_matrix import generation

    rows = generation.generate_rows(model, primer.reshape(-1, 1), length, representation, head, method="carried",
                                    progress=progress, sampling=sampling)
    new = np.asarray(rows[:, 0], dtype=np.int32)
    if "<end>" in labels:
        ends = np.flatnonzero(new == labels.index("<end>"))
        new = new[: ends[0] + 1] if len(ends) else new
    return np.concatenate([primer.astype(np.int32), new])
