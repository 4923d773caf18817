"""`feedsvc` console script: serve, check, build.

Every operator mistake found before the work starts (a bad setting, a missing data
directory, a port in use, a state directory that cannot be written) is one line on
stderr and exit status 1.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

import click

from . import early, preflight, progress, server, settings, statscli, store, workers
from .lastserved import LastServed


def _options(names: list[str]):
    """Click options generated from the settings table, so help and README agree."""
    def wrap(fn):
        for s in reversed([s for s in settings.SETTINGS if s.name in names]):
            kind = type(s.default)
            default = "bundled data/" if s.name == "data_dir" else repr(s.default)
            shown = f"; default {default}" if s.default != "" else ""
            fn = click.option(f"--{s.name.replace('_', '-')}", s.name, default=None,
                              type=kind if kind in (int, float) else str,
                              help=f"{s.help} [env {s.env}{shown}]")(fn)
        return fn
    return wrap


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"feedsvc: {message}", err=True)
    sys.exit(code)


def _config(**overrides) -> settings.Settings:
    try:
        return settings.resolve(overrides)
    except settings.SettingError as e:
        _fail(str(e))


def _preflight(*checks: Callable[[], None]) -> None:
    for check in checks:
        try:
            check()
        except preflight.PreflightError as e:
            _fail(str(e))


def _check_store(config: settings.Settings) -> None:
    """The database, if one is set, is reachable and its schema up to date."""
    try:
        store.check(config.database_url)
    except store.StoreUnavailable as e:
        _fail(str(e))


@click.group(context_settings={"max_content_width": 100})
@click.version_option(package_name="feedsvc", message="feedsvc %(version)s")
def main() -> None:
    """Publish a folder of articles as RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@main.command(short_help="Run the production server.")
@_options(["host", "port", "workers", "data_dir", "state_dir", "database_url", "base_url",
           "max_age"])
def serve(**options) -> None:
    """Run the production server (granian, WSGI) on the data directory.

    On the bundled site, with no base URL set, links point at the address served.
    """
    config = _config(**options)
    where = {name: settings.origin(name, options) for name in settings.DEFAULTS}
    # A missing data directory with state from an earlier run still serves what was
    # published (and reports the data directory); with no state there is nothing to serve
    earlier = os.path.isdir(config.state_dir)
    _preflight(lambda: None if earlier else preflight.check_data_dir(config.data_dir,
                                                                     where["data_dir"]),
               lambda: preflight.check_port(config.host, config.port, where["port"],
                                            where["host"]),
               lambda: preflight.check_state_dir(config.state_dir, where["state_dir"]))
    _check_store(config)
    if not config.base_url and _same_dir(config.data_dir, settings.BUNDLED_DATA):
        config = dataclasses.replace(config, base_url=served_url(config.host, config.port))
    elif not config.base_url:
        hint = local_link_hint(_site_base_url(config), config.host, config.port)
        if hint:
            click.echo(hint, err=True)
    for s in settings.SETTINGS:                  # workers read their settings from here
        os.environ[s.env] = str(config.get(s.name))
    os.environ[server.PARENT_PID] = str(os.getpid())
    try:                        # the port answers from now until a worker serves
        starting = early.Early(config.host, config.port)
    except OSError as e:
        _fail(f"cannot listen on {config.host}:{config.port} ({e.strerror or e})")
    # with what was last published, if anything (requests wait in the listen queue)
    starting.offer(LastServed.open(config)).start()
    # Build once, on every core, before the workers start: each worker then loads from
    # the caches in the state directory instead of parsing and rendering it all again.
    # A separate process, so its peak memory is returned before serving begins.
    _run_warm(config)
    click.echo(f"feedsvc: serving {config.data_dir} on "
               f"http://{config.host}:{config.port}/ with {config.workers} workers")
    server.run(config.host, config.port, config.workers, starting)


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def served_url(host: str, port: int) -> str:
    """The URL a browser on this machine uses for the address served."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _site_base_url(config: settings.Settings) -> str:
    """site.yml's base_url, or "" if it cannot be read now (the build reports why)."""
    from .datafile import read_text
    from .loader import parse_site
    from .model import DataError

    try:
        text, _ = read_text(config.data_dir, "site.yml", config.max_file_bytes)
        return parse_site("site.yml", text).base_url
    except (DataError, OSError):
        return ""


def local_link_hint(base_url: str, host: str, port: int) -> str:
    """A warning when site.yml's base_url is this machine at another port than the one
    served (a copy of the bundled site served with --port): every link would lead to a
    port nobody listens on.  "" when the links lead here or to a public address."""
    try:
        parts = urlsplit(base_url)
        linked = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ""
    if parts.hostname not in ("localhost", "127.0.0.1", "::1") or linked == port:
        return ""
    return (f"feedsvc: warning: site.yml's base_url {base_url} is not the address served "
            f"({served_url(host, port)}): links in feeds and pages lead there; set "
            f"FEEDSVC_BASE_URL or --base-url to the public URL")


def _run_warm(config: settings.Settings) -> None:
    """Run `_warm` in its own process group, so that Ctrl-C reaches only this process,
    which then stops the build and all its pool workers at once, quietly."""
    warm = multiprocessing.get_context("spawn").Process(target=_warm, args=(config,))
    stop = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # SIGINT stays blocked in the build (and its pool), which has its own group
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            warm.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        warm.join()
    except KeyboardInterrupt:
        if warm.pid is not None:
            try:
                os.killpg(warm.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):     # not yet in its own group
                warm.kill()
            warm.join()
        _fail("interrupted before serving", 130)
    finally:
        signal.signal(signal.SIGTERM, stop)
    if warm.exitcode:
        sys.exit(warm.exitcode)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _interrupted(main: int, message: str):
    """A SIGINT handler that stops this process and its pool with one line.

    A plain KeyboardInterrupt made the pool's workers (which get the terminal's SIGINT
    too) and concurrent.futures' manager thread print tracebacks.  Forked workers
    inherit the handler and just exit; this process kills the others, says why, and
    exits 130 with stderr closed, so nothing the unwinding prints reaches the terminal."""
    def handler(_signum, _frame) -> None:
        if os.getpid() != main:
            os._exit(130)
        if workers.defer_interrupt():   # a worker is being started: right after that
            return
        for child in multiprocessing.active_children():
            child.kill()
        click.echo(f"feedsvc: {message}", err=True)
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        raise SystemExit(130)
    return handler


def _warm(config: settings.Settings) -> None:
    os.setpgid(0, 0)                    # see _run_warm; the pool's workers join this group
    server.follow_parent(os.getppid())
    from .live import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = progress.Progress.to(sys.stderr)
    workers.observe(report.update)      # files read, bodies rendered, feeds written
    service = Service(dataclasses.replace(config, watch=False))          # logs every data problem
    report.end()
    workers.observe(None)
    if service.corpus is None:
        if not service.documents:
            sys.exit(1)                 # nothing to serve, ever: say so before listening
        logging.getLogger("feedsvc").warning("feedsvc: %s cannot be read; serving the last "
                                             "published version", config.data_dir)
        return
    service.checkpoint()                # the workers start from it
    logging.getLogger("feedsvc").info(
        "feedsvc: %d articles, %d documents ready", len(service.corpus.articles),
        len(service.documents))


@main.command(short_help="Report every problem in a data directory.")
@click.argument("folder", required=False, metavar="[DATA_DIR]")
@_options(["data_dir"])
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@click.option("--all", "every", is_flag=True,
              help="List every warning, also of a kind found in many places.")
def check(folder: str | None, strict: bool, every: bool, **options) -> None:
    """Print every problem in DATA_DIR, grouped by file, as `file:line:col: message`
    lines, then the scheduled articles with when they go live.

    DATA_DIR is the same as --data-dir.  Exit status 1 when there are errors (files
    that are not published as they are), with --strict also when there are warnings.
    """
    if folder is not None and options["data_dir"] is not None:
        _fail("check: give the data directory once, as DATA_DIR or --data-dir")
    options["data_dir"] = folder if folder is not None else options["data_dir"]
    config = _config(**options)
    where = "DATA_DIR" if folder is not None else settings.origin("data_dir", options)
    _preflight(lambda: preflight.check_data_dir(config.data_dir, where))
    from . import checks, checktext
    from .corpus import Library
    from .model import DataError

    try:
        corpus = Library(config.data_dir, base_url=config.base_url,
                         max_file_bytes=config.max_file_bytes).load()
    except DataError as e:
        _fail(f"check: {e}")
    report = checks.report(corpus, datetime.datetime.now(datetime.UTC),
                           config.max_file_bytes)
    for line in checktext.lines(report, config.data_dir, every):
        click.echo(line)
    sys.exit(1 if report.errors or (strict and report.warnings) else 0)


REJECTED = 2            # `build`: the site was written, but some files were left out


@main.command(short_help="Write the site for nginx or a CDN.")
@click.argument("outdir", type=click.Path(file_okay=False))
@_options(["data_dir", "state_dir", "database_url", "base_url", "max_age"])
@click.option("--listen", default="80", show_default=True,
              help="`listen` parameter of the generated nginx server block.")
@click.option("--allow-errors", is_flag=True,
              help=f"Exit 0 even if some data files were rejected (default: exit {REJECTED}).")
def build(outdir: str, listen: str, allow_errors: bool, **options) -> None:
    """Write every feed, page and the OPML into OUTDIR for nginx or a CDN.

    Each file gets a precompressed .gz sibling; OUTDIR/nginx/feedsvc.conf is a
    server block that serves them with the live service's headers.  Only files
    whose bytes changed are written; files an earlier build wrote that are no
    longer published are removed.  Exit status: 0 built, 2 built but some data
    files were rejected (listed on stderr), 1 nothing built.
    """
    from .export import export
    from .model import DataError

    config = _config(**options)
    _preflight(lambda: preflight.check_data_dir(config.data_dir,
                                                settings.origin("data_dir", options)),
               lambda: preflight.check_out_dir(os.path.abspath(outdir)),
               lambda: preflight.check_state_dir(config.state_dir,
                                                 settings.origin("state_dir", options)))
    _check_store(config)
    report = progress.Progress.to(sys.stderr)
    workers.observe(report.update)      # files read, bodies rendered, feeds written

    def written(done: int, total: int) -> None:
        report.update("written", done, total)

    previous = signal.signal(signal.SIGINT, _interrupted(os.getpid(), "build: interrupted"))
    try:
        result = export(config, outdir, written, listen=listen)
        report.end()
    except (DataError, ValueError) as e:
        _fail(f"build: {e}")
    except OSError as e:
        _fail(f"build: {e.filename or outdir}: {e.strerror or e}")
    finally:
        signal.signal(signal.SIGINT, previous)
        workers.observe(None)
    for problem in result["errors"]:
        click.echo(f"{problem.path}: {'warning: ' if problem.warning else ''}{problem.message}",
                   err=True)
    touched = f", {result['touched']} re-dated" if result["touched"] else ""
    click.echo(f"feedsvc build: {result['written']} written, {result['unchanged']} unchanged, "
               f"{result['removed']} removed{touched} in {os.path.abspath(outdir)} "
               f"(nginx: {result['nginx_conf']})")
    rejected = sum(not e.warning for e in result["errors"])
    if rejected and not allow_errors:
        _fail(f"build: {rejected} data file(s) rejected (see above); their articles are left "
              f"out or kept at their last good version. --allow-errors accepts this", REJECTED)


main.add_command(statscli.admin_group)
main.add_command(statscli.stats_group)
