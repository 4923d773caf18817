"""settings.resolve: the environment it is given, and bad values named by their source."""
from __future__ import annotations

import dataclasses

import pytest

from feedsvc import settings


def test_xdg_state_home_comes_from_the_given_environment(monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "/from/os/environ")
    config = settings.resolve({"data_dir": "/srv/data"}, environ={"XDG_STATE_HOME": "/given"})
    assert config.state_dir.startswith("/given/feedsvc/")
    config = settings.resolve({"data_dir": "/srv/data"}, environ={})
    assert not config.state_dir.startswith("/from/os/environ")


@pytest.mark.parametrize("url", ["garbage", "ftp://news.example.com/", "https://", "/news/",
                                 "http://[::1/"])
def test_a_bad_base_url_names_the_variable_or_the_option(url):
    with pytest.raises(settings.SettingError) as env:
        settings.resolve(environ={"FEEDSVC_BASE_URL": url})
    assert str(env.value).startswith("FEEDSVC_BASE_URL must be an absolute http or https URL")
    assert repr(url) in str(env.value)
    with pytest.raises(settings.SettingError) as option:
        settings.resolve({"base_url": url}, environ={"FEEDSVC_BASE_URL": "https://ok.example/"})
    assert str(option.value).startswith("--base-url must be an absolute http or https URL")


def test_a_good_base_url_passes():
    config = settings.resolve(environ={"FEEDSVC_BASE_URL": " https://news.example.com/x/ "})
    assert config.base_url == "https://news.example.com/x/"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("workers", "0", "FEEDSVC_WORKERS must be at least 1 (got 0)"),
    ("port", "0", "FEEDSVC_PORT must be from 1 to 65535 (got 0)"),
    ("port", "70000", "FEEDSVC_PORT must be from 1 to 65535 (got 70000)"),
    ("max_age", "-1", "FEEDSVC_MAX_AGE must be at least 0 (got -1)"),
    ("workers", "two", "FEEDSVC_WORKERS must be a whole number (got 'two')"),
])
def test_numbers_out_of_range_are_refused(name, value, message):
    with pytest.raises(settings.SettingError) as e:
        settings.resolve(environ={"FEEDSVC_" + name.upper(): value})
    assert str(e.value) == message
    with pytest.raises(settings.SettingError) as e:
        settings.resolve({name: value}, environ={})
    assert str(e.value) == message.replace("FEEDSVC_" + name.upper(),
                                           "--" + name.replace("_", "-"))


def test_origin_names_the_option_then_the_variable_then_both():
    assert settings.origin("state_dir", {"state_dir": "/s"}, {"FEEDSVC_STATE_DIR": "/e"}) \
        == "--state-dir"
    assert settings.origin("state_dir", {"state_dir": None}, {"FEEDSVC_STATE_DIR": "/e"}) \
        == "FEEDSVC_STATE_DIR"
    assert settings.origin("state_dir", {}, {}) == "FEEDSVC_STATE_DIR or --state-dir"


def test_settings_object_has_one_field_per_row_of_the_table():
    """The typed object and the table (which drives env, CLI and README) cannot drift."""
    assert [f.name for f in dataclasses.fields(settings.Settings)] == \
        [s.name for s in settings.SETTINGS]
    config = settings.resolve(environ={})
    for s in settings.SETTINGS:
        assert type(config.get(s.name)) is type(s.default), s.name
