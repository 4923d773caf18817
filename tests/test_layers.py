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


# Each module's imports from within the package, all of them (a function-level import
# counts): the layer diagram (docs/design.md, "Layers"; the README's design notes sum it
# up) drawn as a table.  A module may import only what sits below it; a new module or a
# new arrow is added here, and to that diagram, or the test fails.
LAYERS: dict[str, set[str]] = {
    # leaves: no package imports
    "model": set(), "versions": set(), "workers": set(), "settings": set(),
    "preflight": set(), "feeds": set(), "watch": set(), "__init__": set(),
    "documents": set(), "progress": set(), "lru": set(),
    "http": {"lru"},
    # reading the data, and what outlives a process
    "datafile": {"model"},
    "safeyaml": {"datafile", "model"},
    "loader": {"datafile", "model", "safeyaml"},
    "names": {"model"},
    "statefile": {"model"},
    "oplog": {"model"},
    "lastmodified": set(),
    "validators": {"lastmodified", "model", "statefile"},
    "cache": {"model", "statefile"},
    "pglink": set(),
    "pgstore": {"cache", "lastmodified", "model", "pglink"},
    "store": {"adminstore", "cache", "model", "pglink", "pgadmin", "pgstats", "pgstore",
              "statsstore", "validators"},
    "scan": {"model", "names"},
    "duplicates": {"model", "names"},
    "content": {"datafile", "versions", "workers"},
    "records": {"cache", "datafile", "duplicates", "loader", "model", "names", "scan",
                "versions", "workers"},
    "sitefile": {"cache", "datafile", "loader", "model", "scan"},
    "assembly": {"model", "names", "records"},
    "corpus": {"assembly", "cache", "model", "names", "records", "scan", "sitefile",
               "versions"},
    # documents
    "htmlpages": {"feeds", "model"},
    "hubs": {"feeds"},
    "scopes": {"assembly", "model"},
    "bodies": {"assembly", "cache", "content", "lru", "model"},
    "recipes": {"assembly", "documents", "feeds", "htmlpages", "hubs", "model", "scopes",
                "versions", "views"},
    "splice": {"documents", "feeds", "lru"},
    "feedmaker": {"assembly", "bodies", "documents", "feeds", "htmlpages", "loader",
                  "model", "scopes", "splice", "workers"},
    "views": {"assembly", "bodies", "feeds", "htmlpages", "model"},
    "publish": {"assembly", "bodies", "cache", "documents", "feedmaker", "hubs", "model",
                "recipes", "scopes", "splice", "views"},
    "published": set(),
    "lastserved": {"documents", "http", "published", "settings", "store"},
    "early": {"http", "lastserved"},
    "checkpoint": {"corpus", "versions"},
    "live": {"checkpoint", "checks", "corpus", "http", "hubs", "model", "oplog", "publish",
             "published", "scan", "settings", "store", "watch", "workers"},
    "outdir": {"documents"},
    "nginx": {"feeds", "htmlpages", "http", "loader", "settings"},
    "export": {"cache", "corpus", "hubs", "nginx", "outdir", "publish", "scan", "settings",
               "store"},
    # the WebSub hub's outgoing side
    "netpolicy": set(),
    "websubstore": {"statefile"},
    "pgwebsub": {"pglink", "websubstore"},
    "deliver": {"netpolicy", "websubstore"},
    "websub": {"deliver", "hubs", "live", "netpolicy", "pgwebsub", "publish", "settings",
               "websubstore"},
    # editors' checks
    "checks": {"corpus", "datafile", "loader", "model", "names", "safeyaml", "scan"},
    "checktext": {"checks"},
    # serving and commands
    "pages": {"corpus", "documents", "http", "live", "model"},
    "lastcheck": {"checks", "corpus", "live"},
    "status": {"checks", "lastcheck", "live"},
    # audience statistics and admin access
    "statsstore": {"statefile"},
    "audience": {"statsstore"},
    "pgstats": {"pglink", "statsstore"},
    "statsreport": {"statsstore"},
    "logimport": {"audience", "statsstore"},
    "adminstore": {"statefile"},
    "pgadmin": {"adminstore", "pglink"},
    "admin": {"adminstore"},
    "statspage": {"admin", "statsreport", "statsstore"},
    "statscli": {"admin", "adminstore", "logimport", "settings", "statsstore", "store"},
    "web": {"admin", "audience", "htmlpages", "http", "hubs", "live", "model", "pages",
            "settings", "status", "statspage", "store", "websub"},
    "server": {"early", "web"},
    "cli": {"checks", "checktext", "corpus", "datafile", "early", "export", "lastserved",
            "live", "loader", "model", "preflight", "progress", "server", "settings",
            "statscli", "store", "workers"},
    "__main__": {"cli"},
}


def package_imports(module: Path) -> set[str]:
    """The modules of the package that `module` imports, at any depth of its code."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level == 0 and not (name == "feedsvc" or name.startswith("feedsvc.")):
                continue
            parts = name.split(".")[1:] if node.level == 0 else name.split(".")
            parts = [p for p in parts if p]
            out |= {parts[0]} if parts else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names
                    if a.name.startswith("feedsvc.")}
    return out


def test_every_module_imports_only_what_the_layer_table_allows():
    modules = {m.stem: m for m in PACKAGE.glob("*.py")}
    assert set(modules) == set(LAYERS), "add the module to LAYERS (and docs/design.md's Layers)"
    wrong = {name: sorted(package_imports(path) - LAYERS[name])
             for name, path in modules.items() if package_imports(path) - LAYERS[name]}
    assert wrong == {}, "imports the layer table does not allow (docs/design.md, Layers)"


def test_the_layer_table_has_no_cycle():
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join(path + (name,))
        if name not in done:
            for below in LAYERS[name]:
                visit(below, path + (name,))
            done.add(name)
    for name in LAYERS:
        visit(name, ())


def test_the_import_parser_sees_function_level_and_absolute_imports(tmp_path):
    code = ("from . import feeds, loader\nimport feedsvc.state\nfrom feedsvc.http import x\n"
            "def f():\n    from .live import Service\n    from feedsvc import web\n"
            "import os\nfrom werkzeug import http\n")
    (tmp_path / "m.py").write_text(code)
    assert package_imports(tmp_path / "m.py") == {"feeds", "loader", "state", "http", "live",
                                                  "web"}


def test_only_feeds_imports_feedgen_and_only_web_imports_flask():
    users = {name: {m.name for m in PACKAGE.glob("*.py") if name in imported_roots(m)}
             for name in ("feedgen", "flask", "granian")}
    assert users["feedgen"] == {"feeds.py"}
    assert users["flask"] == {"web.py", "admin.py", "statspage.py"}
    assert users["granian"] <= {"server.py"}


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


def test_every_class_names_its_job_in_a_docstring():
    """Issue 12: one job per class, named where the class is (nested classes too)."""
    missing = [f"{module.name}: {node.name}"
               for module in sorted(PACKAGE.glob("*.py"))
               for node in ast.walk(ast.parse(module.read_text()))
               if isinstance(node, ast.ClassDef) and not ast.get_docstring(node)]
    assert missing == []
