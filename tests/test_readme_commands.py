"""The README's quick start, run as written on a fresh folder with the dataset mirror: the
training command (shortened by appended flags to a tiny model and one epoch), then the
generate and evaluate commands that follow it, each from the README's own text."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORTER = ["--units", "8", "--epochs", "1", "--sample-every", "0", "--quiet"]


def quick_start_commands() -> list[str]:
    """The ``python <script>.py ...`` commands of the README's quick start, in order, without
    the install step before ``&&`` and without the comments after ``#``."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 1)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            command = line.split("&&")[-1].split(" #")[0].strip()
            if re.search(r"\bpython (train|generate|evaluate)\.py\b", command):
                commands.append(command)
    return commands


def run(command: str, cwd: Path, extra: list[str]) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    env = dict(os.environ)
    while "=" in words[0]:  # leading VAR=value assignments
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "python", command
    script = ROOT / words[1]
    return subprocess.run([sys.executable, str(script), *words[2:], *extra], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def test_the_quick_start_names_train_generate_and_evaluate():
    scripts = [shlex.split(command.split("python ", 1)[1])[0] for command in quick_start_commands()]
    assert scripts[0] == "train.py" and {"generate.py", "evaluate.py"} <= set(scripts[1:])


def test_the_quick_start_runs_as_written_against_the_mirror(mirror, tmp_path):
    commands = quick_start_commands()
    trained = run(commands[0], tmp_path, SHORTER)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "data" / "pop" / "Roar - Verse.midi").is_file()  # the mirror's files land in data/pop/
    for command in commands[1:]:
        result = run(command, tmp_path, ["--quiet"])
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert "Traceback" not in result.stderr
    (run_dir,) = (tmp_path / "logs").iterdir()
    assert (run_dir / "generated.mid").is_file() and (run_dir / "evaluation.json").is_file()
