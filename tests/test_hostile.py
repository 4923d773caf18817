"""The hostile data directory (tests/hostile) through the app: every valid article in it is
published, and every feed still parses."""
from __future__ import annotations

from pathlib import Path

HOSTILE = Path(__file__).resolve().parent / "hostile"


def test_hostile_names_all_published(make_app):
    """articles/names/: same file names in two folders, a file named like a fallback slug,
    explicit slugs that collide, C / C++ / C#, one category in four spellings; base_url
    is an IPv6 literal.  Each article has a page of its own and sits in its feeds with a
    valid tag: id."""
    import html
    import re

    import feedparser
    import yaml

    site = yaml.safe_load((HOSTILE / "site.yml").read_text())
    assert site["base_url"] == "http://[::1]:8000/"
    base, authority = site["base_url"], "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0" \
                                         ".0.0.0.0.0.0.0.ip6.arpa"
    dns = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    tag_uri = re.compile(rf"tag:{dns},\d{{4}}:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-F]{{2}})*")
    app = make_app(HOSTILE)
    client = app.test_client()

    def feed(path: str):
        resp = client.get(path)
        assert resp.status_code == 200, path
        parsed = feedparser.parse(resp.data)
        assert parsed.bozo == 0, (path, getattr(parsed, "bozo_exception", None))
        return parsed

    expected = {                                # file below names/ -> (slug, title)
        "2015/weekly-roundup": ("weekly-roundup", "Weekly roundup, last week of 2015"),
        "2016/weekly-roundup": ("names-2016-weekly-roundup", "Weekly roundup, last week of 2016"),
        "2016-weekly-roundup": ("2016-weekly-roundup",
                                "A file named like the 2016 roundup's fallback slug"),
        "explicit-one": ("same-story", "Explicit slug, first"),
        "explicit-two": ("names-same-story", "Explicit slug, second"),
        "c": ("c", "Pointers in C"),
        "c-plus-plus": ("c-plus-plus", "Templates in C++"),
        "c-sharp": ("c-sharp", "LINQ in C#"),
        "hard-news": ("hard-news", "Four spellings, one category"),
    }
    entries = {}
    for scope in ("author/names-desk", "category/c", "category/c-plus-plus",
                  "category/c-sharp"):
        for fmt in ("atom", "rss"):
            parsed = feed(f"/feeds/{scope}.{fmt}")
            if fmt == "atom":
                assert parsed.feed.id == f"tag:{authority},2000:feeds/{scope}"
            for e in parsed.entries:
                assert tag_uri.fullmatch(e.id), e.id
                entries.setdefault(e.id, set()).add((e.link, e.title))
    for stem, (slug, title) in expected.items():
        entry_id = f"tag:{authority},2000:names/{stem}"
        assert entries.get(entry_id) == {(f"{base}articles/{slug}/", title)}, stem
        page = client.get(f"/articles/{slug}/")
        assert page.status_code == 200 and title in html.unescape(page.get_data(as_text=True))

    for slug, name, stem in (("c", "C", "c"), ("c-plus-plus", "C++", "c-plus-plus"),
                             ("c-sharp", "C#", "c-sharp")):
        parsed = feed(f"/feeds/category/{slug}.atom")
        assert [e.id for e in parsed.entries] == [f"tag:{authority},2000:names/{stem}"]
        assert [t.term for t in parsed.entries[0].tags] == [name]
    hard = feed("/feeds/category/hard-news.atom")
    assert f"tag:{authority},2000:names/hard-news" in [e.id for e in hard.entries]
    terms = [t.term for t in next(e for e in hard.entries if e.id.endswith(":names/hard-news"))
             .tags]                             # one category, in one of its spellings
    assert len(terms) == 1 and terms[0] in {"Hard News", "hard-news", "HARD NEWS!", "hard_news"}
    warned = {e["path"] for e in client.get("/healthz").get_json()["errors"]
              if e["level"] == "warning"}
    assert {"articles/names/2016/weekly-roundup.md", "articles/names/explicit-two.md"} <= warned
