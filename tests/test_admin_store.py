"""The admin store (adminstore.py, pgadmin.py): the same contract in files and in
PostgreSQL, and with a database one login for every instance."""
from __future__ import annotations

import re
from contextlib import closing

import psycopg
import pytest
from click.testing import CliRunner
from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures)

from feedsvc import admin
from feedsvc.adminstore import AdminUnavailable
from feedsvc.cli import main
from feedsvc.store import open_admin
from feedsvc.web import close_app

PASSWORD = "correct horse battery"


@pytest.fixture
def make_app(make_app):
    """Apps closed at the end of the test: their database connections too."""
    made = []

    def make(*args, **config):
        made.append(make_app(*args, **config))
        return made[-1]
    yield make
    for app in made:
        close_app(app)


@pytest.fixture(params=["files", "postgresql"])
def stores(request, tmp_path):
    """Open admin stores on one shared state: each call another worker or instance (files:
    one state directory; PostgreSQL: one database, each its own state directory)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    made = []

    def open_one():
        state = tmp_path / (f"state{len(made)}" if url else "state")
        made.append(open_admin(str(state), url))
        return made[-1]
    yield open_one
    for store in made:
        store.close()


def test_the_contract_holds_in_files_and_in_the_database(stores):
    one, two = stores(), stores()
    assert one.password_hash() is None
    one.set_password_hash("$argon2id$first")
    two.set_password_hash("$argon2id$second")
    assert one.password_hash() == two.password_hash() == "$argon2id$second"
    assert len(one.key()) == 32 and one.key() == two.key()
    assert not two.is_ended("n1")
    one.end("n1", until=2000.0, now=1000.0)
    one.end("n1", until=2000.0, now=1000.0)             # twice is once
    assert two.is_ended("n1") and not two.is_ended("n2")
    two.end("n2", until=4000.0, now=3000.0)             # forgets n1, past its expiry
    assert not one.is_ended("n1") and one.is_ended("n2")
    for at, who in [(10.0, "a"), (20.0, "a"), (30.0, "b"), (40.0, "a")]:
        (one if who == "a" else two).fail(who, at)
    assert two.failures("a", since=0.0) == (3, 4)
    assert one.failures("b", since=15.0) == (1, 3)      # the one at 10 s is forgotten
    assert one.failures("c", since=0.0) == (0, 3)
    two.set_password_hash("$argon2id$third")            # an operator resets it: open again
    assert one.failures("a", since=0.0) == (0, 0)


def _login(client, password=PASSWORD):
    form = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]*)"', form).group(1)
    return client.post("/admin/login", data={"password": password, "csrf": token})


def test_with_a_database_a_login_holds_on_every_instance(make_app, data, tmp_path,
                                                         pg_url):  # noqa: F811
    done = CliRunner().invoke(main, ["admin", "set-password", "--state-dir",
                                     str(tmp_path / "cli"), "--database-url", pg_url],
                              input=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.exit_code == 0, done.output
    assert "admin password set in postgresql://" in done.output
    one = make_app(data.root, state_dir=str(tmp_path / "one"), database_url=pg_url,
                   stats_flush_seconds=3600)
    two = make_app(data.root, state_dir=str(tmp_path / "two"), database_url=pg_url,
                   stats_flush_seconds=3600)
    editor = one.test_client()
    assert _login(editor).status_code == 303
    cookie = editor.get_cookie(admin.SESSION, path="/admin/").value
    elsewhere = two.test_client()
    elsewhere.set_cookie(admin.SESSION, cookie, path="/admin/")
    assert elsewhere.get("/admin/stats").status_code == 200     # the other instance agrees
    page = elsewhere.get("/admin/stats").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    assert elsewhere.post("/admin/logout", data={"csrf": token}).status_code == 303
    assert editor.get("/admin/stats").status_code == 303        # logged out on both
    for state in ("one", "two", "cli"):                         # nothing kept on the machines
        left = {p.name for p in (tmp_path / state).glob("admin*")}
        assert not left, (state, left)


def test_with_a_database_the_rate_limit_counts_every_instance(make_app, data, tmp_path,
                                                              pg_url):  # noqa: F811
    with closing(open_admin("", pg_url)) as store:
        admin.set_password(store, PASSWORD)
    apps = [make_app(data.root, state_dir=str(tmp_path / name), database_url=pg_url,
                     stats_flush_seconds=3600) for name in ("one", "two")]
    for n in range(admin.PER_ADDRESS):                          # alternating instances
        assert _login(apps[n % 2].test_client(), "wrong password!").status_code == 403
    for app in apps:
        assert _login(app.test_client()).status_code == 429


def test_without_a_password_the_login_form_says_how_to_set_one(make_app, data):
    resp = _login(make_app(data.root).test_client(), "anything at all")
    assert resp.status_code == 403 and "feedsvc admin set-password" in resp.get_data(True)


def test_a_lost_database_gives_503_on_admin_pages_and_names_no_password(
        make_app, data, tmp_path, pg_cluster):  # noqa: F811
    url = pg_cluster.new_database()
    with closing(open_admin("", url)) as store:
        admin.set_password(store, PASSWORD)
    app = make_app(data.root, database_url=url, stats_flush_seconds=3600)
    client = app.test_client()
    assert _login(client).status_code == 303
    with psycopg.connect(url, autocommit=True) as conn:          # the tables gone: refused
        conn.execute("DROP TABLE feedsvc_admin_keys")
    resp = client.get("/admin/stats")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "30"
    assert "database" in resp.get_data(True) and "***" not in resp.get_data(True)
    assert client.get("/feeds/all.rss").status_code == 200      # feeds as ever
    with closing(open_admin("", url)) as store, \
            pytest.raises(AdminUnavailable, match="admin access cannot use the database"):
        store.password_hash()


def test_a_logged_in_page_reads_the_store_once_per_request(make_app, data, tmp_path):
    """The page and its logout form's CSRF token both need the session: it is worked out
    once per request (with a database every read is a query); no cookie, no read."""
    with closing(open_admin(str(tmp_path / "state"))) as store:
        admin.set_password(store, PASSWORD)
    app = make_app(data.root, stats_flush_seconds=3600)
    adm = app.extensions["feedsvc-admin"]
    reads: list[str] = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            if name in ("password_hash", "is_ended"):
                reads.append(name)
            return getattr(self.inner, name)
    client = app.test_client()
    assert _login(client).status_code == 303
    adm.store = Counting(adm.store)
    page = client.get("/admin/stats")
    assert page.status_code == 200 and 'name="csrf"' in page.get_data(True)
    assert sorted(reads) == ["is_ended", "password_hash"]
    reads.clear()
    assert app.test_client().get("/admin/stats").status_code == 303
    assert reads == []
