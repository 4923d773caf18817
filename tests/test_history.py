"""House style the history keeps: commit subjects of at most 72 characters, the
reasoning in the body.  Checked from the commit this rule was first enforced by a test
(older subjects are history; rewriting published commits would break every clone)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENFORCED_FROM = "7ffa509"       # the last commit before this test


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, check=False)


def test_commit_subjects_are_at_most_72_characters():
    if shutil.which("git") is None or _git("cat-file", "-e", ENFORCED_FROM).returncode:
        pytest.skip("not a git checkout with its history (a release archive, a shallow clone)")
    found = _git("log", "--format=%h %s", f"{ENFORCED_FROM}..HEAD")
    assert found.returncode == 0, found.stderr
    long = [line for line in found.stdout.splitlines()
            if len(line.split(" ", 1)[1]) > 72]
    assert not long, "commit subjects over 72 characters (reword them before pushing):\n" + \
        "\n".join(long)
