"""Datasets: find, download (checksummed), encode (cached) and split MIDI collections.

``--dataset`` is a registered name (``pop``, ``nottingham``, ``nottingham-abc``;
``registry/*.json``) or a folder of ``.mid``/``.midi`` or ``.abc`` files (``resolve.py``);
registered files are downloaded, or copied from the mirror, into ``data/<name>/`` and
checked against their SHA-256 (``download.py``, ``archives.py``). ABC files are split into
tunes, one key each (``tunes.py``).
``encode_dataset`` (``encode.py``) encodes them in this process or in worker processes
(``workers.py``) through a content cache (``cache.py``) and a per-folder manifest and pack
(``manifest.py``), so a warm run parses no MIDI and the arrays are memory-mapped.
``split.py`` splits the files into train / validation / test.
"""

from note_matrix.datasets.cache import CACHE_FORMAT, EncodingCache
from note_matrix.datasets.download import download_dataset, file_sha256
from note_matrix.datasets.encode import EncodedDataset, encode_dataset
from note_matrix.datasets.files import DatasetFiles
from note_matrix.datasets.resolve import (
    MIDI_SUFFIXES,
    MIRROR_ENV,
    REGISTRY_DIR,
    find_midi_files,
    load_registry,
    registered_datasets,
    resolve_dataset,
)
from note_matrix.datasets.split import split_by_file, write_skip_report

__all__ = [
    "CACHE_FORMAT",
    "MIDI_SUFFIXES",
    "MIRROR_ENV",
    "REGISTRY_DIR",
    "DatasetFiles",
    "EncodedDataset",
    "EncodingCache",
    "download_dataset",
    "encode_dataset",
    "file_sha256",
    "find_midi_files",
    "load_registry",
    "registered_datasets",
    "resolve_dataset",
    "split_by_file",
    "write_skip_report",
]
