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
    attack_links = {f"https://hostile.example/articles/{slug}/" for slug in attacks}
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
    legit = contents["https://hostile.example/articles/legit-next-to-attacks/"]
    page = lxml.html.fromstring(client.get("/articles/legit-next-to-attacks/").data)
    for tree in (lxml.html.fromstring(legit), page.find(".//article")):
        links = {a.get("href"): a.text_content() for a in tree.iter("a")}
        assert links["https://example.org/report"] == "source link"
        assert links["https://hostile.example/articles/legit-next-to-attacks/notes/"] == \
            "relative one"
        assert links["https://example.org/ok"] == "a link with a handler"
        figure = tree.find(".//figure")
        assert dict(figure.find("img").attrib) == {
            "src": "https://hostile.example/media/chart.png", "alt": "A chart"}
        assert lxml.html.tostring(figure.find("figcaption"), encoding="unicode") == \
            "<figcaption>The <em>chart</em> of the week.</figcaption>"
        assert [c.text for c in tree.find(".//table").iter("th", "td")] == \
            ["Country", "Votes", "Iran", "12"]
        assert {"src": "https://hostile.example/media/photo.jpg", "alt": "A photo",
                "title": "Photo title"} in [dict(i.attrib) for i in tree.iter("img")]
    # and the text of what was dropped, where it is text (not a script's or a style's)
    styles = contents["https://hostile.example/articles/styles/"]
    assert "A page-covering overlay." in styles and "track.png" not in styles
