"""scripts/setup-system.sh: silent when everything is there, one clear line when it cannot
install what is missing (no apt-get, or neither root nor sudo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "setup-system.sh"


def run(profile: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PY": sys.executable}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT), profile],
                          capture_output=True, text=True, timeout=60, env=env)


def test_nothing_to_do_when_everything_is_installed():
    out = run("test")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_names_the_packages_when_it_cannot_install(tmp_path):
    bin_dir = tmp_path / "bin"  # a machine with bash and Python, no apt-get, no tools
    bin_dir.mkdir()
    for tool in ("bash", "id", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    out = run("test", str(bin_dir))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("shoppulse: missing system packages; install them first: "
                               "sudo apt-get install -y ")
    wanted = lines[0].rsplit("-y ", 1)[1].split()
    assert wanted == ["prometheus", "prometheus-alertmanager", "docker-compose", "chromium",
                      "chromium-driver"]
    assert run("demo", str(bin_dir)).returncode == 0  # the demo needs Python only


def test_unknown_profile():
    out = run("everything")
    assert out.returncode == 2 and "usage" in out.stderr
