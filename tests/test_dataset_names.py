"""File names that are not plain text: bytes that are not UTF-8, tabs and newlines.

Such names are legal on POSIX file systems; a dataset holding them trains on every usable
file, and the skip report keeps each skipped name on its own line (``skipped.txt``) and
exactly (``skipped.json``).
"""

from __future__ import annotations

import json
import os
import shutil

import train
from note_matrix import datasets as ds

SKIPPED = {
    "new\nline.mid": "not a MIDI file",
    "tab\there.mid": "not a MIDI file",
    os.fsdecode(b"bad\xff.mid"): "empty file",
    "bad\\xff.mid": "a backslash, then xff: another name",
    "caf\u00e9 \u200b.mid": "reason with a\ttab\nand a newline",
}


def _from_json(report: dict) -> dict[str, str]:
    """The skipped names as Python lists them, from ``skipped.json``."""
    return {os.fsdecode(bytes.fromhex(entry["file_hex"])): entry["reason"] for entry in report["skipped"]}


def test_the_skip_report_keeps_every_name_on_one_line_and_exactly(tmp_path):
    ds.write_skip_report(tmp_path / "skipped.txt", SKIPPED)
    lines = (tmp_path / "skipped.txt").read_text(encoding="utf-8").split("\n")
    assert lines.pop() == "" and len(lines) == len(SKIPPED)
    assert all(line.count("\t") == 1 for line in lines)
    assert sorted(lines) == sorted([
        "new\\nline.mid\tnot a MIDI file",
        "tab\\there.mid\tnot a MIDI file",
        "bad\\xff.mid\tempty file",
        "bad\\\\xff.mid\ta backslash, then xff: another name",
        "caf\u00e9 \\u200b.mid\treason with a\\ttab\\nand a newline",
    ])
    report = json.loads((tmp_path / "skipped.json").read_text(encoding="utf-8"))
    assert _from_json(report) == SKIPPED
    files = {entry["file_hex"]: entry["file"] for entry in report["skipped"]}
    assert files[b"bad\xff.mid".hex()] == "bad\ufffd.mid"  # readable text, even where the name is not


def test_a_dataset_with_such_names_trains_on_every_usable_file(song_folder, tmp_path, capsys):
    folder = tmp_path / "names"
    shutil.copytree(song_folder, folder)
    good = {os.fsdecode(b"song\xff\n\t.mid"): "song0.mid", "new\nline.mid": "song1.mid"}
    for name, source in good.items():
        (folder / source).rename(folder / name)
    bad = {os.fsdecode(b"junk\xfe.mid"): b"not music", "tab\there.mid": b""}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    logdir = tmp_path / "logs"
    assert train.main(["--dataset", str(folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(logdir),
                       "--run-name", "names", "--units", "8", "--epochs", "1", "--window", "16",
                       "--validation-stride", "8", "--sample-every", "0", "--quiet"]) == 0
    run = logdir / "names"
    split = json.loads((run / "split.json").read_text())
    used = split["train"] + split["validation"] + split["test"]
    assert sorted(used) == sorted(p.name for p in folder.iterdir() if p.name not in bad)  # every good file
    skipped = _from_json(json.loads((run / "skipped.json").read_text()))
    assert sorted(skipped) == sorted(bad)
    assert all((folder / name).is_file() for name in skipped)  # the exact names, usable as paths
    assert len((run / "skipped.txt").read_text().splitlines()) == len(bad)
    assert f"skipped 2 of {len(used) + 2} files" in capsys.readouterr().out
