"""Encoding files in worker processes: the pool, its watchdog and the line protocol.

Protocol, one JSON object per line. The parent sends a worker its set-up
``{"cache", "representation"}``; the worker answers ``{"ready": true}``. Then the
parent sends chunks ``{"keys": [...], "paths": [...]}`` (each key's file,
``DatasetFiles.path``) and the worker answers each key, in order, with
``{"key", **_outcome}`` (about 200 bytes: no array, no file bytes). End of input: the
worker exits. A worker's stdout carries nothing else (its prints go to stderr).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from note_matrix.datasets.cache import EncodingCache
from note_matrix.datasets.encode_file import _outcome, _process_file
from note_matrix.datasets.files import DatasetFiles
from note_matrix.errors import DatasetError
from note_matrix.midi import ReadLimits
from note_matrix.representations import Representation
from note_matrix.representations import from_json as representation_from_json

WORKER_START_SECONDS = 120.0  # a worker process not ready after this long is stopped
WORKER_GRACE_SECONDS = 5.0  # a worker silent for 2 x NOTE_MATRIX_MAX_PARSE_SECONDS + this on one file is stopped
WORKER_START_ATTEMPTS = 3  # consecutive worker processes dying before they are ready: give up
CHUNK_FILES_MAX = 64  # files handed to a worker at a time
WORKER_FAULT_ENV = "NOTE_MATRIX_TEST_WORKER_FAULT"  # tests only: "exit:<key>" or "hang:<key>" in a worker
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding note_matrix/
_WORKER_BOOT = "from note_matrix.datasets.workers import _worker_main; _worker_main()"


def _worker_count(workers: int | None) -> int:
    if workers is None or workers == 0:
        return os.cpu_count() or 1
    if workers < 0:
        raise ValueError(f"workers must be positive, or 0 for one per CPU core; got {workers}")
    return workers


class _Worker:
    """One worker process, a fresh ``python`` (never a fork of this one, which may hold TensorFlow)."""

    def __init__(self, setup: str, replies: queue.Queue):
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, environment.get("PYTHONPATH")]))
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=environment,
        )
        self.keys: collections.deque[str] = collections.deque()  # the chunk in hand, the current file first
        self.ready = False
        self.deadline = time.monotonic() + WORKER_START_SECONDS
        threading.Thread(target=self._read_replies, args=(replies,), daemon=True).start()
        self.send(setup)

    def _read_replies(self, replies: queue.Queue) -> None:
        for line in self.process.stdout:
            replies.put((self, line))
        replies.put((self, None))  # end of output: the worker exited or was stopped

    def send(self, line: str) -> None:
        try:
            self.process.stdin.write(line.encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died: the end of its output reports that

    def death(self) -> str:
        """How the worker ended: exit status or signal, and the last line it wrote to stderr."""
        code = self.process.wait()
        if code < 0:
            try:
                status = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                status = f"killed by signal {-code}"
        else:
            status = f"exit status {code}"
        self.stderr.seek(max(0, self.stderr.seek(0, os.SEEK_END) - 4096))
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f"{status}: {lines[-1].strip()[:200]}" if lines else status

    def stop(self, *, kill: bool) -> None:
        if kill:
            self.process.kill()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def _encode_in_workers(
    files: DatasetFiles, keys: list[str], representation: Representation, cache: EncodingCache, workers: int, record
) -> None:
    """Run ``_process_file`` on every key in ``workers`` processes; ``record(key, outcome)`` each result.

    Files go out in chunks to whichever worker is free. A worker that dies, or is silent
    on one file for twice the reader's time limit plus ``WORKER_GRACE_SECONDS``, is
    stopped: its current file is recorded as skipped with the reason, the rest of its
    chunk goes back to the queue, and a new worker takes its place.
    """
    max_seconds = ReadLimits.from_env().max_seconds
    file_seconds = 2 * max_seconds + WORKER_GRACE_SECONDS
    chunk_size = max(1, min(CHUNK_FILES_MAX, len(keys) // (4 * workers)))
    chunks = collections.deque(keys[i : i + chunk_size] for i in range(0, len(keys), chunk_size))
    setup = json.dumps({"cache": str(cache.folder), "representation": representation.to_json()})
    replies: queue.Queue = queue.Queue()
    pool: list[_Worker] = []
    failed_starts = 0

    def stop(worker: _Worker, reason: str) -> None:
        nonlocal failed_starts
        pool.remove(worker)
        worker.stop(kill=True)
        if worker.keys:
            record(worker.keys.popleft(), _outcome(None, reason, final=False, signature=None, hashed=False,
                                                   parsed=False))
            if worker.keys:
                chunks.appendleft(list(worker.keys))
        elif not worker.ready:
            failed_starts += 1
            if failed_starts >= WORKER_START_ATTEMPTS:
                raise DatasetError(
                    f"{WORKER_START_ATTEMPTS} worker processes for encoding failed to start (the last: {reason}); "
                    "encode in this process with --workers 1"
                )

    def handle(worker: _Worker, line: bytes | None) -> None:
        nonlocal failed_starts
        if line is None:
            death = worker.death()
            stop(worker, f"worker crashed while encoding this file ({death})" if worker.ready else death)
            return
        reply = _read_reply(line)
        if reply is None:
            stop(worker, "worker sent an unreadable reply and was stopped")
        elif reply.get("ready"):
            worker.ready, failed_starts = True, 0
        elif worker.keys and reply.get("key") == worker.keys[0]:
            record(worker.keys.popleft(), {name: value for name, value in reply.items() if name != "key"})
            worker.deadline = time.monotonic() + file_seconds
        else:
            stop(worker, "worker answered out of turn and was stopped")

    try:
        while chunks or any(worker.keys for worker in pool):
            idle = [worker for worker in pool if not worker.keys]
            while len(pool) < workers and len(chunks) > len(idle):
                idle.append(_Worker(setup, replies))
                pool.append(idle[-1])
            for worker in idle:
                if worker.ready and chunks:
                    worker.keys.extend(chunks.popleft())
                    worker.deadline = time.monotonic() + file_seconds
                    keys = list(worker.keys)
                    worker.send(json.dumps({"keys": keys, "paths": [str(files.path(key)) for key in keys]}))
            waiting = [worker for worker in pool if worker.keys or not worker.ready]
            try:
                worker, line = replies.get(timeout=max(0.0, min(w.deadline for w in waiting) - time.monotonic()))
            except queue.Empty:
                worker = None
            if worker in pool:  # not None, nor the last words of a worker already stopped
                handle(worker, line)
            now = time.monotonic()
            for worker in [w for w in pool if (w.keys or not w.ready) and w.deadline <= now]:
                if worker.ready:
                    stop(worker, f"no result after {file_seconds:g} s, the worker process was stopped "
                                 f"(the reader's own limit is {max_seconds:g} s, NOTE_MATRIX_MAX_PARSE_SECONDS)")
                else:
                    stop(worker, f"not ready after {WORKER_START_SECONDS:g} s")
    finally:
        for worker in pool:
            worker.stop(kill=bool(chunks or worker.keys))


def _read_reply(line: bytes) -> dict | None:
    """One line from a worker as a JSON object, or None if it is not one."""
    try:
        reply = json.loads(line)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _worker_main() -> None:
    """A worker process's loop (see the module docstring): set-up, then chunks of keys, until end of input."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the replies
    sys.stdout = sys.stderr
    setup = json.loads(sys.stdin.buffer.readline())
    cache = EncodingCache.in_folder(Path(setup["cache"]))
    representation = representation_from_json(setup["representation"])
    fault = os.environ.get(WORKER_FAULT_ENV, "")
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin.buffer:
        chunk = json.loads(line)
        for key, path in zip(chunk["keys"], chunk["paths"]):
            if fault == f"exit:{key}":
                os._exit(70)
            if fault == f"hang:{key}":
                time.sleep(3600)
            replies.write(json.dumps({"key": key, **_process_file(Path(path), representation, cache)}) + "\n")
