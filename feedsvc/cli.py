"""`feedsvc` console script: serve, check, build."""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys

import click

from . import settings


def _options(names: list[str]):
    """Click options generated from the settings table, so help and README agree."""
    def wrap(fn):
        for s in reversed([s for s in settings.SETTINGS if s.name in names]):
            kind = type(s.default)
            fn = click.option(f"--{s.name.replace('_', '-')}", s.name, default=None,
                              type=kind if kind in (int, float) else str,
                              help=f"{s.help} [env {s.env}; default {s.default!r}]")(fn)
        return fn
    return wrap


def _config(**overrides) -> dict:
    try:
        return settings.resolve(overrides)
    except settings.SettingError as e:
        raise click.UsageError(str(e)) from None


@click.group()
def main() -> None:
    """Publish a folder of articles as RSS 2.0 and Atom 1.0 feeds."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@main.command()
@_options(["host", "port", "workers", "data_dir", "state_dir", "base_url", "max_age"])
def serve(**options) -> None:
    """Run the production server (granian, WSGI) on the data directory."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    config = _config(**options)
    for s in settings.SETTINGS:                  # workers read their settings from here
        os.environ[s.env] = str(config[s.name])
    # Build once, on every core, before the workers start: each worker then loads from
    # the caches in the state directory instead of parsing and rendering it all again.
    # A separate process, so its peak memory is returned before serving begins.
    warm = multiprocessing.get_context("spawn").Process(target=_warm, args=(config,))
    warm.start()
    warm.join()
    if warm.exitcode:
        sys.exit(warm.exitcode)
    click.echo(f"feedsvc: serving {config['data_dir']} on "
               f"http://{config['host']}:{config['port']}/ with {config['workers']} workers")
    Server("feedsvc.web:create_app", factory=True, address=config["host"], port=config["port"],
           interface=Interfaces.WSGI, workers=max(1, config["workers"]),
           blocking_threads=1, websockets=False, log_access=False,
           respawn_failed_workers=True,
           # HTTP/1.1 only: the auto mode waits for a first byte to tell HTTP/2 from 1.1,
           # with no time limit, so connections that send nothing were never closed.
           # A client gets 10 s to send its headers, between requests too.
           http=HTTPModes.http1,
           http1_settings=HTTP1Settings(header_read_timeout=10_000)).serve()


def _warm(config: dict) -> None:
    from .live import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    service = Service({**config, "watch": False})          # logs every data problem
    if service.corpus is None:
        if not service.documents:
            sys.exit(1)                 # nothing to serve, ever: say so before listening
        logging.getLogger("feedsvc").warning("feedsvc: %s cannot be read; serving the last "
                                             "published version", config["data_dir"])
        return
    service.checkpoint()                # the workers start from it
    logging.getLogger("feedsvc").info(
        "feedsvc: %d articles, %d documents ready", len(service.corpus.articles),
        len(service.documents))


@main.command()
@click.argument("data_dir", required=False)
def check(data_dir: str | None) -> None:
    """Print every problem in DATA_DIR as `path: message`; exit 1 on any error."""
    config = _config(data_dir=data_dir)
    errors = _report_problems(config, echo=True)
    sys.exit(1 if any(not e.warning for e in errors) else 0)


def _report_problems(config: dict, echo: bool = False) -> list:
    from .corpus import Library
    from .model import DataError

    try:
        corpus = Library(config["data_dir"], base_url=config["base_url"],
                         max_file_bytes=config["max_file_bytes"]).load()
    except DataError as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    for problem in corpus.errors:
        line = f"{problem.path}: {'warning: ' if problem.warning else ''}{problem.message}"
        if echo:
            click.echo(line)
        else:
            logging.getLogger("feedsvc").warning(line)
    if echo and not corpus.errors:
        click.echo(f"{config['data_dir']}: {len(corpus.articles)} articles, no problems")
    return corpus.errors


@main.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@_options(["data_dir", "state_dir", "base_url", "max_age"])
@click.option("--listen", default="80", show_default=True,
              help="`listen` parameter of the generated nginx server block.")
def build(outdir: str, listen: str, **options) -> None:
    """Write every feed, page and the OPML into OUTDIR for nginx or a CDN.

    Each file gets a precompressed .gz sibling; OUTDIR/nginx/feedsvc.conf is a
    server block that serves them with the live service's headers.  Only files
    whose bytes changed are written; files an earlier build wrote that are no
    longer published are removed.
    """
    from .export import export
    from .model import DataError

    config = _config(**options)
    bar = None
    if sys.stdout.isatty():
        bar = click.progressbar(length=1, label="feedsvc build", show_pos=True)

    def progress(done: int, total: int) -> None:
        assert bar is not None
        bar.length = total
        bar.update(done - bar.pos)

    try:
        if bar is not None:
            with bar:
                result = export(config, outdir, progress, listen=listen)
        else:
            result = export(config, outdir, listen=listen)
    except (DataError, ValueError) as e:
        click.echo(f"feedsvc build: {e}", err=True)
        sys.exit(1)
    for problem in result["errors"]:
        click.echo(f"{problem.path}: {'warning: ' if problem.warning else ''}{problem.message}",
                   err=True)
    touched = f", {result['touched']} re-dated" if result["touched"] else ""
    click.echo(f"feedsvc build: {result['written']} written, {result['unchanged']} unchanged, "
               f"{result['removed']} removed{touched} in {os.path.abspath(outdir)} "
               f"(nginx: {result['nginx_conf']})")
