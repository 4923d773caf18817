"""Service settings: one table drives defaults, FEEDSVC_* variables, CLI options and the README.

Site settings (title, base_url, timezone ...) live in data/site.yml; these are
the operator's knobs.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUNDLED_DATA = str(Path(__file__).resolve().parent.parent / "data")


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str

    @property
    def env(self) -> str:
        return "FEEDSVC_" + self.name.upper()


SETTINGS = [
    Setting("data_dir", BUNDLED_DATA, "The data directory to publish."),
    Setting("state_dir", "", "Where validators and the rendered-HTML cache persist "
            "(default: $XDG_STATE_HOME/feedsvc/<hash of data_dir>). Share it between "
            "instances on one data directory to share Last-Modified."),
    Setting("base_url", "", "Public URL of the site; overrides base_url in site.yml."),
    Setting("max_age", 300, "Cache-Control max-age in seconds (cut short before a "
            "scheduled article goes live)."),
    Setting("max_file_bytes", 1 << 20, "Data files larger than this are rejected."),
    Setting("poll_seconds", 10.0, "Safety rescan interval; file events trigger a reload "
            "at once, this catches what events miss (network file systems)."),
    Setting("watch", True, "Follow changes to the data directory without a restart."),
    Setting("host", "127.0.0.1", "`feedsvc serve`: address to listen on."),
    Setting("port", 8000, "`feedsvc serve`: port to listen on."),
    Setting("workers", 2, "`feedsvc serve`: worker processes."),
]
DEFAULTS = {s.name: s.default for s in SETTINGS}


class SettingError(ValueError):
    pass


def resolve(overrides: dict | None = None, environ: Mapping[str, str] | None = None) -> dict:
    """Defaults, then FEEDSVC_* environment, then explicit overrides; checked and typed."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    out: dict[str, Any] = dict(DEFAULTS)
    for s in SETTINGS:
        if s.env in env:
            out[s.name] = env[s.env]
    for k, v in (overrides or {}).items():
        if k not in DEFAULTS:
            raise SettingError(f"unknown setting {k!r}")
        if v is not None:
            out[k] = v
    for s in SETTINGS:
        kind = type(s.default)
        if kind is bool and isinstance(out[s.name], str):
            text = out[s.name].strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise SettingError(f"{s.env} must be true or false (got {out[s.name]!r})")
            out[s.name] = text in ("1", "true", "yes", "on")
        elif kind in (int, float):
            try:
                out[s.name] = kind(out[s.name])
            except (TypeError, ValueError):
                raise SettingError(f"{s.env} must be a number (got {out[s.name]!r})") from None
            if out[s.name] < 0:
                raise SettingError(f"{s.env} must not be negative (got {out[s.name]!r})")
    out["data_dir"] = os.path.abspath(str(out["data_dir"]))
    if not out["state_dir"]:
        base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        tag = hashlib.sha256(out["data_dir"].encode()).hexdigest()[:12]
        out["state_dir"] = os.path.join(base, "feedsvc", tag)
    return out
