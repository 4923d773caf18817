"""Admin access: no admin page or number without a login; CSRF; the rate limit; cookies."""
from __future__ import annotations

import re

import pytest
from itsdangerous import URLSafeTimedSerializer

from feedsvc import admin, adminstore
from feedsvc.statsstore import SQLiteStats
from feedsvc.store import open_admin

PASSWORD = "correct horse battery"
ADMIN_GETS = ["/admin/", "/admin/stats", "/admin/stats?days=365", "/admin/stats?feed=feeds/all",
              "/admin/stats.csv", "/admin/stats.json", "/admin/stats.json?days=7",
              "/admin/status/"]


@pytest.fixture
def app(make_app, data, tmp_path):
    admin.set_password(open_admin(str(tmp_path / "state")), PASSWORD)
    return make_app(data.root, stats_flush_seconds=3600)


def _token(resp) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', resp.get_data(as_text=True))
    assert found, resp.get_data(as_text=True)
    return found.group(1)


def login(client, password=PASSWORD, csrf=True):
    form = client.get("/admin/login")
    data = {"password": password}
    if csrf:
        data["csrf"] = _token(form)
    return client.post("/admin/login", data=data)


def _refused(resp) -> None:
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/login")
    assert b"<svg" not in resp.data and b"requests" not in resp.data


@pytest.mark.parametrize("url", ADMIN_GETS)
def test_every_admin_url_needs_a_login(app, url):
    _refused(app.test_client().get(url))


@pytest.mark.parametrize("url", ADMIN_GETS)
def test_a_forged_or_altered_session_cookie_is_refused(app, url, tmp_path):
    client = app.test_client()
    forged = URLSafeTimedSerializer(b"x" * 32, salt="feedsvc-admin-session").dumps(
        {"p": "0" * 32, "n": "n"})
    client.set_cookie(admin.SESSION, forged, path="/admin/")
    _refused(client.get(url))
    good = app.test_client()
    assert login(good).status_code == 303
    cookie = good.get_cookie(admin.SESSION, path="/admin/").value
    client.set_cookie(admin.SESSION, cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB"),
                      path="/admin/")
    _refused(client.get(url))


def test_login_gives_a_strict_httponly_cookie_and_the_page(app):
    client = app.test_client()
    resp = login(client)
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/stats"
    cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith(admin.SESSION)][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin/" in cookie
    assert "Secure" not in cookie                   # plain http, no https base URL
    page = client.get("/admin/stats?days=7")
    assert page.status_code == 200 and b"<svg" in page.data
    assert page.headers["Cache-Control"] == "no-store"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
    assert client.get("/admin/stats.csv").data.startswith(b"day,feed,client,kind,")
    assert client.get("/admin/stats.json").json["columns"][0] == "day"


def test_the_cookie_is_secure_behind_an_https_base_url(make_app, data, tmp_path):
    admin.set_password(open_admin(str(tmp_path / "state")), PASSWORD)
    app = make_app(data.root, base_url="https://news.example.com/")
    resp = login(app.test_client())
    assert any("Secure" in h for h in resp.headers.getlist("Set-Cookie"))


def test_a_post_without_its_csrf_token_is_refused(app):
    client = app.test_client()
    resp = login(client, csrf=False)
    assert resp.status_code == 403 and client.get_cookie(admin.SESSION, path="/admin/") is None
    assert login(client).status_code == 303
    assert client.post("/admin/logout").status_code == 403
    assert client.get("/admin/stats").status_code == 200         # still logged in
    token = _token(client.get("/admin/stats"))
    cross = client.post("/admin/logout", data={"csrf": token},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert client.post("/admin/logout", data={"csrf": token}).status_code == 303
    _refused(client.get("/admin/stats"))


def test_failed_logins_are_rate_limited(app):
    client = app.test_client()
    for _ in range(admin.PER_ADDRESS):
        assert login(client, "wrong password!").status_code == 403
    resp = login(client)                        # even the right one, until the window ends
    assert resp.status_code == 429 and "Retry-After" in resp.headers
    assert client.get_cookie(admin.SESSION, path="/admin/") is None


def test_a_new_password_ends_the_sessions_of_the_old(app, tmp_path):
    client = app.test_client()
    assert login(client).status_code == 303
    admin.set_password(open_admin(str(tmp_path / "state")), "another long password")
    _refused(client.get("/admin/stats"))


def test_without_a_password_nobody_logs_in(make_app, data):
    client = make_app(data.root).test_client()
    assert login(client, "").status_code == 403
    _refused(client.get("/admin/stats"))


def test_other_paths_still_refuse_post(app):
    resp = app.test_client().post("/feeds/all.rss")
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, HEAD"


def test_the_password_hash_is_argon2_and_private(tmp_path):
    admin.set_password(open_admin(str(tmp_path)), PASSWORD)
    path = tmp_path / adminstore.PASSWORD_FILE
    assert path.read_text().startswith("$argon2id$") and PASSWORD not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="10 characters"):
        admin.set_password(open_admin(str(tmp_path)), "short")


def test_behind_a_proxy_the_limit_is_per_forwarded_address(make_app, data, tmp_path):
    admin.set_password(open_admin(str(tmp_path / "state")), PASSWORD)
    app = make_app(data.root, stats_forwarded_for=True)
    mallory = app.test_client()
    mallory.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.66"
    for _ in range(admin.PER_ADDRESS):
        assert login(mallory, "wrong password!").status_code == 403
    assert login(mallory).status_code == 429
    editor = app.test_client()
    editor.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.7"
    assert login(editor).status_code == 303


def test_with_stats_off_nothing_is_counted(make_app, data, tmp_path):
    off = make_app(data.root, stats=False)
    assert off.wsgi_app.observe is None and "feedsvc-stats" not in off.extensions
    off.test_client().get("/feeds/all.atom", headers={"User-Agent": "Wget/1.21"})
    on = make_app(data.root, stats_flush_seconds=3600)
    on.test_client().get("/feeds/all.rss", headers={"User-Agent": "curl/8.5.0"})
    on.test_client().get("/", headers={"User-Agent": "curl/8.5.0"})     # not a feed
    on.extensions["feedsvc-stats"].counter.flush()
    store = SQLiteStats(str(tmp_path / "state"))
    assert [(t.path, t.client, t.ok) for t in store.totals("2000-01-01", "2100-01-01")] == \
        [("feeds/all.rss", "curl", 1)]


def test_set_password_command(tmp_path):
    from click.testing import CliRunner

    from feedsvc.cli import main
    state = tmp_path / "state"
    runner = CliRunner()
    done = runner.invoke(main, ["admin", "set-password", "--state-dir", str(state)],
                         input=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.exit_code == 0, done.output
    assert (state / adminstore.PASSWORD_FILE).read_text().startswith("$argon2id$")
    short = runner.invoke(main, ["admin", "set-password", "--state-dir", str(state)],
                          input="short\nshort\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output


def test_a_bad_key_file_is_replaced_and_the_service_runs(make_app, data, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / adminstore.SECRET_FILE).write_bytes(b"short")
    admin.set_password(open_admin(str(state)), PASSWORD)
    app = make_app(data.root)
    assert login(app.test_client()).status_code == 303
    assert len((state / adminstore.SECRET_FILE).read_bytes()) == 32


def test_logout_ends_the_session_for_a_copy_of_the_cookie_too(app):
    client = app.test_client()
    assert login(client).status_code == 303
    copy = app.test_client()
    copy.set_cookie(admin.SESSION, client.get_cookie(admin.SESSION, path="/admin/").value,
                    path="/admin/")
    assert copy.get("/admin/stats").status_code == 200
    token = _token(client.get("/admin/stats"))
    assert client.post("/admin/logout", data={"csrf": token}).status_code == 303
    _refused(copy.get("/admin/stats"))
