"""The hostile corpus (tests/hostile/): data written to break the service or to attack
its readers, loaded through the app.  Each subfolder of tests/hostile/articles/ is one
kind of attack; articles/attacks/ holds raw HTML and URLs that would run code."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import lxml.etree
import lxml.html
from test_content import dangers

HOSTILE = Path(__file__).resolve().parent / "hostile"
BASE = "http://[::1]:8000/"                # hostile/site.yml: an IPv6 base_url
# In a feed's bytes, HTML is escaped (or in CDATA): what must not be there in any form
_RAW_DANGERS = re.compile(
    rb"<script|&lt;(?:script|iframe|svg|math|style|object|embed|form|meta|base|link|!--)"
    rb"|javascript:|vbscript:|data:(?:text|image)|\son[a-z]+\s*=|style\s*=|formaction",
    re.IGNORECASE)

_SRCSET = re.compile(r' srcset="[^"]*"')
_ITEM = re.compile(rb"<item>.*?</item>|<entry>.*?</entry>", re.DOTALL)


def _feeds(client) -> list[str]:
    """Every feed's path, from the OPML (RSS) and their Atom twins."""
    opml = lxml.etree.fromstring(client.get("/feeds.opml").data)
    rss = [urlsplit(o.get("xmlUrl")).path for o in opml.iter("outline")]
    return [p for path in rss for p in (path, path[:-len(".rss")] + ".atom")]


def test_hostile_bodies_are_sanitized_everywhere(make_app):
    client = make_app(HOSTILE).test_client()
    attacks = sorted(p.stem for p in (HOSTILE / "articles" / "attacks").glob("*.md"))
    assert len(attacks) >= 7
    for slug in attacks:
        resp = client.get(f"/articles/{slug}/")
        assert resp.status_code == 200, slug
        article = lxml.html.fromstring(resp.data).find(".//article")
        assert dangers(lxml.html.tostring(article, encoding="unicode")) == [], slug

    feeds = _feeds(client)
    assert {"/feeds/all.rss", "/feeds/all.atom", "/feeds/category/attacks.atom",
            "/feeds/author/mallory.rss"} <= set(feeds)
    contents: dict[str, str] = {}
    attack_links = {f"{BASE}articles/{slug}/" for slug in attacks}
    raw_items = 0
    for path in feeds:
        raw = client.get(path).data
        # each attack's item, as bytes (other hostile folders' titles may hold "<script>")
        for item in _ITEM.findall(raw):
            if any(link.encode() in item for link in attack_links):
                assert _RAW_DANGERS.search(item) is None, (path, item)
                raw_items += 1
        # feedparser sanitizes HTML itself by default, which would hide what we publish
        parsed = feedparser.parse(raw, sanitize_html=False)
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        # and its sanitizer, as a reader runs it, finds nothing to drop in the attacks but
        # srcset (which it does not know): a second opinion
        by_feedparser = feedparser.parse(raw).entries
        for entry, sanitized in zip(parsed.entries, by_feedparser, strict=True):
            html = entry.content[0].value
            assert dangers(html) == [] and dangers(entry.summary) == [], (path, entry.title)
            if entry.link in attack_links:
                assert _SRCSET.sub("", html) == sanitized.content[0].value, (path, entry.title)
            contents[entry.link] = html
    assert attack_links <= set(contents)
    assert raw_items >= 4 * len(attacks)    # site, category and author feeds, RSS and Atom

    # what articles need survives, in the feeds and on the page
    legit = contents[BASE + "articles/legit-next-to-attacks/"]
    page = lxml.html.fromstring(client.get("/articles/legit-next-to-attacks/").data)
    for tree in (lxml.html.fromstring(legit), page.find(".//article")):
        links = {a.get("href"): a.text_content() for a in tree.iter("a")}
        assert links["https://example.org/report"] == "source link"
        assert links[BASE + "articles/legit-next-to-attacks/notes/"] == \
            "relative one"
        assert links["https://example.org/ok"] == "a link with a handler"
        figure = tree.find(".//figure")
        assert dict(figure.find("img").attrib) == {
            "src": BASE + "media/chart.png", "alt": "A chart"}
        assert lxml.html.tostring(figure.find("figcaption"), encoding="unicode") == \
            "<figcaption>The <em>chart</em> of the week.</figcaption>"
        assert [c.text for c in tree.find(".//table").iter("th", "td")] == \
            ["Country", "Votes", "Iran", "12"]
        assert {"src": BASE + "media/photo.jpg", "alt": "A photo",
                "title": "Photo title"} in [dict(i.attrib) for i in tree.iter("img")]
    # and the text of what was dropped, where it is text (not a script's or a style's)
    styles = contents[BASE + "articles/styles/"]
    assert "A page-covering overlay." in styles and "track.png" not in styles


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
