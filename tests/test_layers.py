"""Layer boundaries are tested, not hoped for; the README's settings table follows the code."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from feedsvc import settings

PACKAGE = Path(__file__).resolve().parent.parent / "feedsvc"
README = PACKAGE.parent / "README.md"


def imported_roots(module: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_feeds_imports_feedgen_and_only_web_imports_flask():
    users = {name: {m.name for m in PACKAGE.glob("*.py") if name in imported_roots(m)}
             for name in ("feedgen", "flask", "granian")}
    assert users["feedgen"] == {"feeds.py"}
    assert users["flask"] == {"web.py"}
    assert users["granian"] <= {"cli.py"}


def test_loading_articles_pulls_in_no_web_or_feed_library():
    code = ("import sys, feedsvc.corpus, feedsvc.loader; "
            "print(sorted(m for m in ('flask', 'feedgen', 'werkzeug', 'jinja2', 'lxml') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_settings_table_lists_every_setting():
    text = README.read_text()
    for s in settings.SETTINGS:
        assert f"| {s.name} | `{s.env}` |" in text, s.name


def test_ruff_and_mypy_are_clean():
    root = PACKAGE.parent
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "feedsvc", "tests", "bench",
                           "wsgi.py"], cwd=root, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout
    mypy = subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True,
                          text=True)
    assert mypy.returncode == 0, mypy.stdout
