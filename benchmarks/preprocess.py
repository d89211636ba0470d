"""Preprocessing benchmark: MIDI parsing cold vs. the cache warm, and memory as the corpus grows.

    NOTE_MATRIX_MIRROR=/work/shared/datasets python benchmarks/preprocess.py

1. Files per second of ``encode_dataset`` on the pop and Nottingham datasets (read from
   the mirror): cold (an empty cache: every file parsed), warm (the same call again: the
   manifest vouches for every file by ``stat``) and warm without the manifest (every
   file hashed and found in the content cache), with the cold/warm ratio.
2. Peak memory and time of encoding the Nottingham MIDI folder (``MIDI/*.mid``, 1,034
   files) copied 1, 4 and 16 times, with 1 and 2 workers, each in a fresh process with
   an empty cache, then once more warm. Every copy gets a distinct tag appended after its
   last track (bytes the reader skips), so no two copies share a SHA-256 and the
   content-addressed cache cannot make a copy free; the encoded arrays are unchanged.

Memory is the resident set size: ``parent`` is the encoding process's peak
(``getrusage(RUSAGE_SELF)``), ``worker`` the largest worker's peak
(``getrusage(RUSAGE_CHILDREN)``), ``total`` the peak of the parent's and its workers'
RSS summed, sampled every 20 ms from ``/proc`` (Linux only; blank elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from note_matrix import NoteMatrix
from note_matrix import datasets as ds

COPY_TAG = b"NMBENCH-COPY-%03d"  # appended after the last track: skipped by the reader, changes the SHA-256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4, 16], help="copies of Nottingham (%(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (%(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed warm runs, best kept (%(default)s)")
    parser.add_argument("--skip-speed", action="store_true", help="only the memory part")
    parser.add_argument("--skip-memory", action="store_true", help="only the speed part")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measured encoding, as JSON
    return parser.parse_args(argv)


# -- part 1: cold parse vs warm cache ------------------------------------------------------


def _timed(files: ds.DatasetFiles, data_dir: Path, workers: int) -> tuple[float, ds.EncodedDataset]:
    start = time.perf_counter()
    encoded = ds.encode_dataset(files, NoteMatrix(), data_dir, progress=False, workers=workers)
    return time.perf_counter() - start, encoded


def speed(name: str, repeats: int, scratch: Path) -> dict:
    files = ds.resolve_dataset(name, scratch / "data")  # copied there from the mirror, or downloaded
    n = len(files.keys)
    figures = {"files": n}
    for workers in (1, 2):
        data_dir = scratch / f"{name}-speed-{workers}"
        seconds, cold = _timed(files, data_dir, workers)
        assert cold.parsed_files > 0.9 * n, "the cold run must parse (is the cache really empty?)"
        figures[f"cold_workers{workers}_s"] = seconds
    data_dir = scratch / f"{name}-speed-1"
    warm = []
    for _ in range(repeats):
        seconds, encoded = _timed(files, data_dir, 1)
        assert (encoded.parsed_files, encoded.hashed_files) == (0, 0), "the warm run must trust every file"
        warm.append(seconds)
    hashed = []
    for _ in range(repeats):
        for manifest in data_dir.glob("cache/*/datasets/*"):
            manifest.unlink()
        seconds, encoded = _timed(files, data_dir, 1)
        assert encoded.parsed_files == 0 and encoded.hashed_files == n
        hashed.append(seconds)
    figures.update(warm_s=min(warm), warm_median_s=statistics.median(warm), hashed_s=min(hashed))
    return figures


def print_speed(results: dict[str, dict]) -> None:
    print("\n1. MIDI parsing, cold vs. cache warm (files/s; one process unless stated)")
    header = f"{'dataset':<11}{'files':>6}{'cold':>10}{'cold, 2 workers':>17}{'warm':>11}{'warm/cold':>11}" \
             f"{'hashed, no manifest':>21}{'ratio':>7}"
    print(header)
    for name, f in results.items():
        n = f["files"]
        print(
            f"{name:<11}{n:>6}{n / f['cold_workers1_s']:>10,.0f}{n / f['cold_workers2_s']:>17,.0f}"
            f"{n / f['warm_s']:>11,.0f}{f['cold_workers1_s'] / f['warm_s']:>10,.0f}x"
            f"{n / f['hashed_s']:>21,.0f}{f['cold_workers1_s'] / f['hashed_s']:>6,.0f}x"
        )
    print("   warm: best of the repeats (median: "
          + ", ".join(f"{name} {f['warm_median_s'] * 1e3:.1f} ms" for name, f in results.items()) + ")")


# -- part 2: memory as the corpus grows ----------------------------------------------------


def make_copies(source: Path, copies: int, target: Path) -> int:
    """``copies`` tagged copies of every ``source/*.mid`` in ``target``; returns the file count."""
    target.mkdir(parents=True)
    originals = sorted(source.glob("*.mid"))
    for copy in range(copies):
        for path in originals:
            (target / f"c{copy:03d}-{path.name}").write_bytes(path.read_bytes() + COPY_TAG % copy)
    return copies * len(originals)


def check_tag_is_harmless(source: Path, scratch: Path) -> None:
    original = min(source.glob("*.mid"))
    tagged = scratch / "tagged.mid"
    tagged.write_bytes(original.read_bytes() + COPY_TAG % 7)
    np.testing.assert_array_equal(NoteMatrix().encode(tagged).steps, NoteMatrix().encode(original).steps)


class RssSampler:
    """Peak RSS of this process and of this process plus its children, sampled from /proc."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.available = Path("/proc/self/statm").exists()
        self.peak_total = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, pid: int | str) -> int:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self.page
        except (OSError, IndexError, ValueError):
            return 0

    def _children(self) -> list[str]:
        children = []
        for task in Path("/proc/self/task").iterdir():
            try:
                children += (task / "children").read_text().split()
            except OSError:
                pass
        return children

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            total = self._rss("self") + sum(self._rss(pid) for pid in self._children())
            self.peak_total = max(self.peak_total, total)

    def __enter__(self) -> RssSampler:
        if self.available:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.available:
            self.thread.join()


def child(spec: dict) -> dict:
    """One measured encoding (run in a fresh process, so its peaks are its own)."""
    files = ds.resolve_dataset(spec["folder"], Path(spec["data_dir"]))
    kib = 1024  # ru_maxrss is in KiB on Linux
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2**20
    with RssSampler() as sampler:
        start = time.perf_counter()
        encoded = ds.encode_dataset(files, NoteMatrix(), Path(spec["data_dir"]), progress=False,
                                    workers=spec["workers"])
        seconds = time.perf_counter() - start
    rows = sum(len(array) for array in encoded.arrays.values())
    return {
        "files": len(files.keys),
        "encoded": len(encoded.arrays),
        "parsed": encoded.parsed_files,
        "seconds": seconds,
        "rows": rows,
        "arrays_mb": rows * 3 * 4 / 2**20,
        "parent_before_mb": before_mb,
        "parent_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2**20,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 2**20,
        "total_peak_mb": sampler.peak_total / 2**20 if sampler.available else None,
    }


def run_child(folder: Path, data_dir: Path, workers: int) -> dict:
    spec = json.dumps({"folder": str(folder), "data_dir": str(data_dir), "workers": workers})
    done = subprocess.run([sys.executable, __file__, "--child", spec], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(copies: list[int], worker_counts: list[int], scratch: Path) -> list[dict]:
    source = Path(os.environ[ds.MIRROR_ENV]) / ds.load_registry("nottingham")["mirror_subdir"]
    check_tag_is_harmless(source, scratch)
    folders = {count: scratch / f"nottingham-x{count}" for count in copies}
    for count, folder in folders.items():
        make_copies(source, count, folder)
    rows = []
    for workers in worker_counts:
        for count, folder in folders.items():
            data_dir = scratch / f"data-x{count}-w{workers}"
            cold = run_child(folder, data_dir, workers)
            warm = run_child(folder, data_dir, workers)
            assert cold["parsed"] >= 0.99 * cold["files"] and warm["parsed"] == 0  # Nottingham repeats 5 files
            rows.append({"copies": count, "workers": workers, "cold": cold, "warm": warm})
            shutil.rmtree(data_dir)
    return rows


def print_memory(rows: list[dict]) -> None:
    print("\n2. Encoding Nottingham copied N times (each copy tagged: distinct SHA-256, same arrays); "
          "fresh process and empty cache per line, then warm")
    print(f"{'copies':>6}{'workers':>8}{'files':>7}{'arrays MB':>10}{'cold s':>8}{'files/s':>8}"
          f"{'before MB':>10}{'parent MB':>10}{'(+)':>5}{'worker MB':>10}{'total MB':>9}"
          f"{'warm s':>8}{'warm parent MB':>15}{'(+)':>5}")
    for row in rows:
        cold, warm = row["cold"], row["warm"]
        total = f"{cold['total_peak_mb']:.0f}" if cold["total_peak_mb"] is not None else "-"
        print(
            f"{row['copies']:>6}{row['workers']:>8}{cold['files']:>7,}{cold['arrays_mb']:>10.1f}"
            f"{cold['seconds']:>8.1f}{cold['files'] / cold['seconds']:>8,.0f}{cold['parent_before_mb']:>10.0f}"
            f"{cold['parent_peak_mb']:>10.0f}{cold['parent_peak_mb'] - cold['parent_before_mb']:>+5.0f}"
            f"{cold['worker_peak_mb']:>10.0f}{total:>9}{warm['seconds']:>8.2f}{warm['parent_peak_mb']:>15.0f}"
            f"{warm['parent_peak_mb'] - warm['parent_before_mb']:>+5.0f}"
        )
    print("   arrays MB: the encoded data returned; before MB: the encoding process's RSS after imports and listing "
          "the files; parent MB (+): its peak RSS while encoding (and the rise); worker MB: the largest worker's "
          "peak; total MB: peak of parent + workers together")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not os.environ.get(ds.MIRROR_ENV):
        print(f"set {ds.MIRROR_ENV} to the dataset mirror (e.g. /work/shared/datasets)", file=sys.stderr)
        return 2
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{os.cpu_count()} CPU cores (load average {load} at the start), Python {sys.version.split()[0]}, "
          f"NumPy {np.__version__}")
    figures = {}
    with tempfile.TemporaryDirectory(prefix="preprocess-bench-") as scratch:
        scratch = Path(scratch)
        if not args.skip_speed:
            figures["speed"] = {name: speed(name, args.repeats, scratch) for name in ("pop", "nottingham")}
            print_speed(figures["speed"])
        if not args.skip_memory:
            figures["memory"] = memory(args.copies, args.workers, scratch)
            print_memory(figures["memory"])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
