"""The `feedsvc admin` and `feedsvc stats` commands: the admin password, log import.

Imported by every `feedsvc` command, so it loads neither Flask nor argon2 itself."""
from __future__ import annotations

import sys
import time

import click

from . import settings
from .logimport import import_log
from .statsstore import StatsUnavailable, day_of
from .store import StoreUnavailable, check, open_admin, open_stats


def _config(state_dir: str | None, data_dir: str | None,
            database_url: str | None = None) -> settings.Settings:
    try:
        return settings.resolve({"state_dir": state_dir, "data_dir": data_dir,
                                 "database_url": database_url})
    except settings.SettingError as e:
        click.echo(f"feedsvc: {e}", err=True)
        sys.exit(1)


@click.group("admin")
def admin_group() -> None:
    """Admin access to /admin/ (statistics)."""


@admin_group.command("set-password")
@click.option("--state-dir", default=None, help="The state directory [env FEEDSVC_STATE_DIR].")
@click.option("--data-dir", default=None, help="The data directory (names the default "
              "state directory) [env FEEDSVC_DATA_DIR].")
@click.option("--database-url", default=None, help="The PostgreSQL database the serving "
              "instances share, if they do: the password then holds on every one "
              "[env FEEDSVC_DATABASE_URL].")
@click.password_option(prompt="New admin password")
def set_password(state_dir: str | None, data_dir: str | None, database_url: str | None,
                 password: str) -> None:
    """Store the admin password's argon2 hash (state directory, or the database)."""
    from . import admin  # Flask and argon2: loaded by this command only
    from .adminstore import AdminUnavailable

    config = _config(state_dir, data_dir, database_url)
    try:
        check(config.database_url)
    except StoreUnavailable as e:
        click.echo(f"feedsvc: {e}", err=True)
        sys.exit(1)
    store = open_admin(config.state_dir, config.database_url)
    try:
        admin.set_password(store, password)
    except (ValueError, OSError, AdminUnavailable) as e:
        click.echo(f"feedsvc: {e}", err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"feedsvc: admin password set in {store.where}")


@click.group("stats")
def stats_group() -> None:
    """Audience statistics."""


@stats_group.command("import-log")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--state-dir", default=None, help="The state directory [env FEEDSVC_STATE_DIR].")
@click.option("--data-dir", default=None, help="The data directory (names the default "
              "state directory) [env FEEDSVC_DATA_DIR].")
@click.option("--database-url", default=None, help="The PostgreSQL database the serving "
              "instances count in, if they do [env FEEDSVC_DATABASE_URL].")
def import_logs(files: tuple[str, ...], state_dir: str | None, data_dir: str | None,
                database_url: str | None) -> None:
    """Add nginx access logs (combined format, .gz too) to the statistics; a file read
    before adds only the lines appended since."""
    config = _config(state_dir, data_dir, database_url)
    try:
        check(config.database_url)
    except StoreUnavailable as e:
        click.echo(f"feedsvc: {e}", err=True)
        sys.exit(1)
    store = open_stats(config.state_dir, config.database_url)
    try:
        for name in files:
            try:
                done = import_log(name, store)
            except (OSError, EOFError) as e:        # gzip.BadGzipFile is an OSError
                click.echo(f"feedsvc: {name}: cannot be read ({e}); import it again once "
                           f"it is whole (what was counted is not counted twice)", err=True)
                sys.exit(1)
            except StatsUnavailable as e:
                click.echo(f"feedsvc: {name}: {e}; import it again once the database is "
                           "back (what was counted is not counted twice)", err=True)
                sys.exit(1)
            note = " (already imported)" if done.already else ""
            click.echo(f"{name}: {done.lines} new lines, {done.counted} feed requests counted, "
                       f"{done.skipped} not in the combined format{note}")
        store.keep(day_of(time.time()), config.stats_retention_days)
    finally:
        store.close()
