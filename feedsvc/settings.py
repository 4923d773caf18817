"""Service settings: one table drives defaults, FEEDSVC_* variables, CLI options and the README.

Site settings (title, base_url, timezone ...) live in data/site.yml; these are
the operator's knobs.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def _bundled_data() -> str:
    """The bundled site: `data/` beside the package in a source tree (and an editable
    install), `feedsvc/bundled/` in an installed wheel (setup.cfg maps one to the other)."""
    here = Path(__file__).resolve().parent
    installed = here / "bundled"
    return str(installed if (installed / "site.yml").is_file() else here.parent / "data")


BUNDLED_DATA = _bundled_data()


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: environment, CLI and README read it."""
    name: str
    default: object
    help: str
    minimum: float = 0                  # numbers only
    maximum: float | None = None

    @property
    def env(self) -> str:
        return "FEEDSVC_" + self.name.upper()


SETTINGS = [
    Setting("data_dir", BUNDLED_DATA, "The data directory to publish."),
    Setting("state_dir", "", "Where validators and the rendered-HTML cache persist "
            "(default: $XDG_STATE_HOME/feedsvc/<hash of data_dir>). Share it between "
            "instances on one data directory and one machine to share Last-Modified "
            "(several machines: database_url); not on a network file system."),
    Setting("database_url", "", "PostgreSQL URL (postgresql://user:password@host/db) "
            "holding validators, caches and statistics for several instances on several "
            "machines; empty: SQLite in the state directory."),
    Setting("base_url", "", "Public URL of the site (absolute http or https); overrides "
            "base_url in site.yml."),
    Setting("max_age", 300, "Cache-Control max-age in seconds (cut short before a "
            "scheduled article goes live)."),
    Setting("max_file_bytes", 1 << 20, "Data files larger than this are rejected."),
    Setting("poll_seconds", 10.0, "Safety rescan interval; file events trigger a reload "
            "at once, this catches what events miss (network file systems)."),
    Setting("watch", True, "Follow changes to the data directory without a restart."),
    Setting("host", "127.0.0.1", "Address to listen on (serve)."),
    Setting("port", 8000, "Port to listen on (serve).", minimum=1, maximum=65535),
    Setting("workers", 2, "Worker processes (serve), at least 1.", minimum=1),
    Setting("stats", True, "Count feed requests for the statistics at /admin/stats "
            "(stats.sqlite in the state directory, or the database_url database)."),
    Setting("stats_flush_seconds", 5.0, "How often each worker writes its counts to "
            "stats.sqlite or the database.", minimum=0.1, maximum=3600),
    Setting("stats_retention_days", 400, "Days of statistics kept.", minimum=1),
    Setting("stats_forwarded_for", False, "Take the client address for counting distinct "
            "readers and the login rate limit from the last X-Forwarded-For entry: set it "
            "only behind a proxy that sets that header."),
    Setting("websub", True, "Run the built-in WebSub hub at /websub and advertise it in "
            "every feed (serve)."),
    Setting("websub_hubs", "", "External WebSub hubs (space-separated http(s) URLs) pinged "
            "with hub.mode=publish on every change of a feed, and advertised."),
    Setting("websub_lease_seconds", 864000, "Lease given when a subscriber asks for none.",
            minimum=1),
    Setting("websub_lease_min", 3600, "Shortest lease given; shorter requests get this.",
            minimum=1),
    Setting("websub_lease_max", 2592000, "Longest lease given; longer requests get this.",
            minimum=1),
    Setting("websub_retry_seconds", 3600.0, "How long a failed delivery is retried (backoff "
            "from 0.5 s, doubling, at most 60 s apart) before it is dropped and logged; the "
            "subscription is kept."),
    Setting("websub_rate", 60, "Subscription requests per clock minute accepted from one "
            "client address (REMOTE_ADDR), counted for every worker and instance.",
            minimum=1),
    Setting("websub_allow_private", False, "Allow callbacks on loopback and private "
            "addresses (tests, private networks). Risk: anyone who can reach /websub can "
            "make the hub send requests into this machine or network."),
]
DEFAULTS = {s.name: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The operator's settings, resolved and checked: one field per row of SETTINGS
    (a test holds the two together).  Build one with `resolve`; change one with
    `dataclasses.replace(config, name=value)`."""
    data_dir: str
    state_dir: str
    database_url: str
    base_url: str
    max_age: int
    max_file_bytes: int
    poll_seconds: float
    watch: bool
    host: str
    port: int
    workers: int
    stats: bool
    stats_flush_seconds: float
    stats_retention_days: int
    stats_forwarded_for: bool
    websub: bool
    websub_hubs: str
    websub_lease_seconds: int
    websub_lease_min: int
    websub_lease_max: int
    websub_retry_seconds: float
    websub_rate: int
    websub_allow_private: bool

    @property
    def external_hubs(self) -> tuple[str, ...]:
        """The external hubs of `websub_hubs`, in the order given."""
        return tuple(dict.fromkeys(self.websub_hubs.replace(",", " ").split()))

    def get(self, name: str) -> Any:
        """The value of the setting called `name` (for code driven by SETTINGS)."""
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}



class SettingError(ValueError):
    """A setting's value is wrong; the message names the setting and the fix."""
    pass


def origin(name: str, overrides: Mapping[str, Any] | None = None,
           environ: Mapping[str, str] | None = None) -> str:
    """Where the operator set `name`, for messages: its option, else its variable, else
    (the default was used) both names."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    option = "--" + name.replace("_", "-")
    variable = "FEEDSVC_" + name.upper()
    if (overrides or {}).get(name) is not None:
        return option
    if variable in env:
        return variable
    return f"{variable} or {option}"


def resolve(overrides: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then FEEDSVC_* environment, then explicit overrides; checked and typed.

    `environ` (default: os.environ) is the only environment read, XDG_STATE_HOME
    included.  A bad value raises SettingError naming the option or variable it
    came from."""
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
        out[s.name] = _typed(s, out[s.name], origin(s.name, overrides, env))
    out["base_url"] = str(out["base_url"]).strip()
    if out["base_url"]:
        _check_base_url(out["base_url"], origin("base_url", overrides, env))
    for hub in str(out["websub_hubs"]).replace(",", " ").split():
        _check_base_url(hub, origin("websub_hubs", overrides, env))
    if out["websub_lease_min"] > out["websub_lease_max"]:
        raise SettingError(f"{origin('websub_lease_min', overrides, env)} must not exceed "
                           f"{origin('websub_lease_max', overrides, env)}")
    out["data_dir"] = os.path.abspath(str(out["data_dir"]))
    if not out["state_dir"]:
        base = env.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        tag = hashlib.sha256(os.fsencode(out["data_dir"])).hexdigest()[:12]
        out["state_dir"] = os.path.join(base, "feedsvc", tag)
    return Settings(**out)


def _typed(s: Setting, value: Any, where: str) -> Any:
    """`value` of the setting `s` as the type of its default, checked (`where`: where the
    operator set it, for the message)."""
    kind = type(s.default)
    if kind is bool and isinstance(value, str):
        text = value.strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise SettingError(f"{where} must be true or false (got {value!r})")
        return text in ("1", "true", "yes", "on")
    if kind not in (int, float):
        return value
    try:
        number = kind(value)
    except (TypeError, ValueError):
        whole = "a whole number" if kind is int else "a number"
        raise SettingError(f"{where} must be {whole} (got {value!r})") from None
    if number < s.minimum or (s.maximum is not None and number > s.maximum):
        bounds = (f"from {s.minimum:g} to {s.maximum:g}" if s.maximum is not None
                  else f"at least {s.minimum:g}")
        raise SettingError(f"{where} must be {bounds} (got {number!r})")
    return number


def _check_base_url(url: str, where: str) -> None:
    try:
        parts = urlsplit(url)
        good = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:              # e.g. an unclosed [ of an IPv6 address
        good = False
    if not good:
        raise SettingError(f"{where} must be an absolute http or https URL with a host, like "
                           f"https://news.example.com/ (got {url!r})")
