"""Article bodies: references to characters XML forbids never break a feed."""
from __future__ import annotations

import contextlib
import ctypes
from html import escape

import feedparser
import pytest

from feedsvc import content


def test_forbidden_numeric_references_are_dropped():
    html, summary = content.render(("a &#1; b &#xFFFE; c &#65; &#x1F600;", "https://x.test/a/", ""))
    assert html == "<p>a  b  c A \U0001F600</p>"
    assert summary == "a b c A \U0001F600"


def test_one_bad_body_does_not_stop_publishing(make_app, data):
    data.article("bad", title="Bad", body="Escape &#1; and &#xFFFE; here.\n")
    data.article("good", title="Good", date="2024-10-29T13:00:00+03:30")
    client = make_app(data.root).test_client()
    for path in ("/feeds/all.atom", "/feeds/all.rss"):
        parsed = feedparser.parse(client.get(path).data)
        assert parsed.bozo == 0
        assert [e.title for e in parsed.entries] == ["Good", "Bad"]


def test_editing_an_image_updates_the_enclosure_length(make_app, data):
    (data.root / "media").mkdir()
    (data.root / "media" / "p.png").write_bytes(b"\x89PNG" + b"0" * 96)
    data.article("pic", title="Pic", image="/media/p.png")
    app = make_app(data.root)
    service = app.extensions["feedsvc"]
    client = app.test_client()
    assert b'length="100"' in client.get("/feeds/all.rss").data
    (data.root / "media" / "p.png").write_bytes(b"\x89PNG" + b"0" * 996)
    service.refresh()
    assert b'length="1000"' in client.get("/feeds/all.rss").data


@pytest.mark.parametrize("body", ["<html>", "<!DOCTYPE html>", "<html>\n\nText after [a](x)."])
def test_document_level_markup_in_a_body_renders(body):
    """lxml refuses a fragment that is only `<html>`: such a body once stopped every build."""
    html, _ = content.render((body, "https://x.test/articles/a/", ""))
    assert "<html" not in html.lower() and "doctype" not in html.lower()
    if "[a](x)" in body:
        assert 'href="https://x.test/articles/a/x"' in html


@pytest.mark.parametrize("trusted", [False, True])
def test_a_link_urllib_cannot_read_keeps_the_body(trusted):
    """Such a link is left as written when trusted; the sanitizer drops it (a URL no
    parser can read) and keeps the rest."""
    for link in ("http://[x", "https://[x"):
        html, _ = content.render((f'<a href="{link}">odd</a> and [rel](a/b)\n',
                                  "https://news.example.com/articles/x/", ""), trusted)
        assert (f'href="{link}"' in html) == trusted and ">odd</a>" in html
        assert 'href="https://news.example.com/articles/x/a/b"' in html


def test_a_srcset_candidate_urllib_cannot_read_keeps_the_body():
    """(srcset is kept when the site trusts its editors; the sanitizer drops it)"""
    html, _ = content.render(('<img srcset="https://[x 1x, b.jpg 2x" src="a.jpg">\n',
                              "https://news.example.com/articles/x/", ""), True)
    assert 'srcset="https://[x 1x, https://news.example.com/articles/x/b.jpg 2x"' in html


# -- nothing from a body runs ---------------------------------------------------------------

_ATTACKS = {
    "script": "Before.\n\n<script>alert(1)</script>\n\nAfter.\n",
    "inline script": "Text <script>alert(1)</script> more.\n",
    "svg script": "<svg><script>alert(1)</script><text>svg text</text></svg>\n\nAfter.\n",
    "onerror": '<img src="/m/a.png" onerror="alert(1)" alt="pic">\n',
    "onload in a tag": '<p onclick="alert(1)" onmouseover=alert(2)>Click me</p>\n',
    "javascript link": '<a href="javascript:alert(1)">x</a>\n',
    "upper case": '<a href="JaVaScRiPt:alert(1)">x</a> <a href="JAVASCRIPT:alert(1)">y</a>\n',
    "tab entity": '<a href="jav&#x09;ascript:alert(1)">x</a>\n',
    "newline entity": '<a href="jav&#10;ascript:alert(1)">x</a>\n',
    "named entity": '<a href="javascript&colon;alert(1)">x</a>\n',
    "encoded": '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:alert(1)">'
               'x</a>\n',
    "leading space": '<a href=" javascript:alert(1)">x</a>\n',
    "vbscript": '<a href="vbscript:msgbox(1)">x</a>\n',
    "data link": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>\n',
    "data image": '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=" alt="d">\n',
    "iframe": '<iframe src="https://evil.example/"></iframe>\n\nAfter.\n',
    "iframe javascript": '<iframe src="javascript:alert(1)">inner</iframe>\n',
    "style url": '<p style="background:url(javascript:alert(1))">styled</p>\n',
    "style element": "<style>body{background:url(javascript:alert(1))}</style>\n\nAfter.\n",
    "object": '<object data="javascript:alert(1)"></object><embed src="javascript:alert(1)">\n',
    "form": '<form action="javascript:alert(1)"><button formaction="javascript:alert(1)">b'
            '</button><input onfocus="alert(1)" autofocus></form>\n',
    "meta refresh": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">\n',
    "base": '<base href="javascript:alert(1)//">\n',
    "cite": '<blockquote cite="javascript:alert(1)">quoted</blockquote>\n',
    "srcset": '<img src="/a.png" srcset="javascript:alert(1) 1x, /b.png 2x" alt="s">\n',
    "srcset only hostile": '<img src="/a.png" srcset=" jav&#x09;ascript:alert(1) 1x, '
                           'DATA:image/svg+xml;base64,PHN2Zz4= 2x" alt="s">\n',
    "math": '<math><mi xlink:href="javascript:alert(1)">m</mi></math>\n',
    "comment": "<!-- <script>alert(1)</script> -->\n\nAfter.\n",
    "markdown link": "[x](javascript:alert(1)) and [y](JAVASCRIPT:alert(1))\n",
    "markdown image": "![x](javascript:alert(1)) ![y](data:image/png;base64,AAAA)\n",
    "markdown reference": "[x][r]\n\n[r]: javascript:alert(1)\n",
    "markdown autolink": "<javascript:alert(1)>\n",
    "markdown encoded": "[x](&#106;avascript:alert(1)) [y](java&#x09;script:alert(1))\n",
}
_ACTIVE = {"script", "iframe", "frame", "style", "object", "embed", "svg", "math", "form",
           "input", "button", "meta", "base", "link", "template", "noscript"}
_BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")


def dangers(html: str) -> list[str]:
    """What in `html` (a body, or a page) could run or load hostile content: an active
    element, an event handler, a style attribute, a URL of a scheme that runs code or
    carries its own document; a comment (where scripts hide from naive filters)."""
    import lxml.html

    found = []
    if not html.strip():
        return found
    for el in lxml.html.fromstring(f"<div>{html}</div>").iter():
        if not isinstance(el.tag, str):
            found.append("comment or processing instruction")
            continue
        if el.tag.lower() in _ACTIVE:
            found.append(f"<{el.tag}>")
        for attr, value in el.items():
            attr = attr.lower()
            folded = "".join(value.lower().split())     # browsers drop tabs and newlines
            if attr.startswith("on") or attr in ("style", "formaction", "action"):
                found.append(f"{el.tag} {attr}=")
            elif any(scheme in folded for scheme in _BAD_SCHEMES):
                found.append(f"{el.tag} {attr}={value!r}")
    return found


@pytest.mark.parametrize("name", list(_ATTACKS))
def test_nothing_from_a_body_runs(name):
    html, _ = content.render((_ATTACKS[name], "https://news.example/articles/a/", ""))
    assert dangers(html) == [] and "<script" not in html.lower(), html
    assert content.render((_ATTACKS[name], "https://news.example/articles/a/", ""), True) \
        == _through_lxml(_ATTACKS[name], "https://news.example/articles/a/", "", True)


def test_what_articles_need_survives_sanitizing():
    body = ('<figure><img src="media/a.jpg" alt="A" title="t" width="10"><figcaption>Cap '
            '<em>tion</em></figcaption></figure>\n\n'
            '<table><thead><tr><th scope="col">H</th></tr></thead><tbody><tr><td colspan="2">'
            'D</td></tr></tbody><tfoot><tr><td>F</td></tr></tfoot></table>\n\n'
            '<p>A <a href="https://example.org/x" title="T">link</a>, <strong>bold</strong>, '
            '<code>c</code>, <sup>1</sup>, <abbr title="World">W</abbr>, <mark>m</mark>.</p>'
            '\n\n<blockquote cite="https://example.org/q"><p>Q</p></blockquote>\n\n'
            '<img src="b.png" srcset="b.png 1x, https://cdn.example/b2.png 2x" alt="b">\n\n'
            '## Heading\n\n- one\n- two\n\n3. three\n\n```python\nx = 1 < 2\n```\n\n'
            "[rel](x/y) and ![i](/m/i.png) and <mailto:desk@news.example>\n")
    html, _ = content.render((body, "https://news.example/articles/a/", ""))
    for kept in ('<figure><img src="https://news.example/articles/a/media/a.jpg" alt="A" '
                 'title="t" width="10"><figcaption>Cap <em>tion</em></figcaption></figure>',
                 '<th scope="col">H</th>', '<td colspan="2">D</td>', "<tfoot>",
                 '<a href="https://example.org/x" title="T">link</a>', "<strong>bold</strong>",
                 "<code>c</code>", "<sup>1</sup>", '<abbr title="World">W</abbr>, m.</p>',
                 "<blockquote><p>Q</p></blockquote>",
                 '<img src="https://news.example/articles/a/b.png" srcset="https://news.'
                 'example/articles/a/b.png 1x, https://cdn.example/b2.png 2x" alt="b">',
                 "<h2>Heading</h2>", "<li>one</li>", '<ol start="3">',
                 '<pre><code class="language-python">x = 1 &lt; 2\n</code></pre>',
                 '<a href="https://news.example/articles/a/x/y">rel</a>',
                 '<img src="https://news.example/m/i.png" alt="i">',
                 '<a href="mailto:desk@news.example">'):
        assert kept in html, kept
    assert "rel=" not in html         # no rel="noopener noreferrer" added: see content.py


def test_what_survives_is_what_feed_readers_take_as_safe():
    """Every element and attribute the sanitizer keeps is on feedparser's lists of safe
    ones, but responsive images' (src stays): a reader's sanitizer finds nothing else to
    strip."""
    from feedparser.sanitizer import _HTMLSanitizer

    elements = content._TAGS - set(_HTMLSanitizer.acceptable_elements)
    attributes = set().union(*content._ATTRIBUTES.values()) - \
        set(_HTMLSanitizer.acceptable_attributes)
    assert not elements and attributes == {"srcset", "sizes"}, (elements, attributes)


def test_attacks_kept_only_when_the_site_trusts_its_editors():
    body = _ATTACKS["script"] + _ATTACKS["markdown link"]
    trusted, _ = content.render((body, "https://news.example/articles/a/", ""), True)
    assert "<script>alert(1)</script>" in trusted and 'href="javascript:alert(1)"' in trusted
    assert dangers(trusted) == ["<script>", "a href='javascript:alert(1)'",
                                "a href='JAVASCRIPT:alert(1)'"]
    assert content.body_key("d", "https://n/a/", True) != content.body_key("d", "https://n/a/")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33+ only")
def test_rendering_keeps_no_c_memory():
    """cmark's HTML buffer is freed: 2,000 renders of a 6 KB body leave the C heap as it
    was (cmarkgfm.markdown_to_html alone keeps every buffer, 22 MB here)."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    body = "A paragraph with a [link](/x) and *emphasis*.\n\n" * 130
    content.render((body, "https://news.example/articles/a/", ""))
    before = mallinfo2().uordblks
    for _ in range(2000):
        html, _summary = content.render((body, "https://news.example/articles/a/", ""))
    assert len(html) > 6000
    assert mallinfo2().uordblks - before < 1_000_000


@pytest.mark.parametrize("body", [
    "", "plain", "# Title\n\nText with *em*, `code` and a [link](/a \"t\").\n",
    "<div>raw <b>html</b></div>\n\n- a\n- b\n", "é 中文 \U0001F600 &amp; &#1; &copy;\n",
    "```\n<code>\n```\n" * 50])
def test_markdown_to_html_is_cmarkgfms_output(body):
    """content.markdown_to_html calls cmark through cmarkgfm's private module to free the
    buffer (see above): it must give exactly what cmarkgfm's public function gives, the
    fallback where that module is not as expected."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    assert content.markdown_to_html is not content.public_markdown_to_html
    assert content.markdown_to_html(body) == content.public_markdown_to_html(body) == \
        cmarkgfm.markdown_to_html(body, options=Options.CMARK_OPT_UNSAFE)


def test_the_freeing_call_gives_the_public_functions_bytes():
    """Differential test over random bodies: the private call and the public fallback
    give the same HTML (for bodies as `render` hands them over)."""
    import random

    rng = random.Random(5)
    for _ in range(2000):
        body = content._NUMERIC_REFERENCE.sub(content._xml_safe_reference,
                                              _markdown(rng, raw_html=rng.random() < 0.5))
        assert content.markdown_to_html(body) == content.public_markdown_to_html(body), body


def test_a_cmarkgfm_without_the_private_module_falls_back(monkeypatch):
    """A cmarkgfm whose cffi module moved (a release past the pin): the public function
    renders, no error at import or render."""
    import types

    import cmarkgfm

    monkeypatch.setattr(cmarkgfm, "_cmark", types.ModuleType("cmarkgfm._cmark"))
    assert content._freeing_cmark() is None
    monkeypatch.undo()
    assert content._freeing_cmark() is not None


# -- the lxml-free path for bodies without raw HTML (content._plain) ------------------------

_WORDS = ["news", "über", "café", "خبر", "新闻", "\U0001f600", "x", "don't", '"quoted"',
          "'single'", "a&b", "AT&T", "3 > 1", "50%", "C#", "snake_case", "*", "**", "_", "`",
          "\\*", "\\", "[", "]", "(", ")", "!", "#", "-", "+", "&amp;", "&nbsp;", "&copy;",
          "&#39;", "&#x27;", "&quot;", "&#0;", "&#xFFFE;", "&#x85;", "&bogus;", "\u00a0",
          "\u00ad", "\u200f", "\u2028", "\x85", "~", "|", "^", "=", "?", "%20", "{", "}", "@",
          "$", ";", ":", "/", ".", "...", "\u2014", "&#13;", "&#xD;"]
_URLS = ["/media/a.jpg", "media/b.png", "../up.html", "./same", "#frag", "?q=1&r=2",
         "http://localhost:8000/x", "https://example.org/ref/a-1", "HTTP://EXAMPLE.ORG/Up",
         "//cdn.example.net/i.png", "mailto:a@b.c", "data:image/png;base64,AAAA",
         "javascript:alert(1)", "/a b", "/\u00fc/\u00e9", "/a'b", '/a"b', '/q?x=1&y="2"',
         "/a%20b", "/x#y z", "http://[::1]/x", "http://x:99999/", "ftp://f.example/x",
         "/path/with(parens)", "/~user/", "/semi;colon", "  /spaced  ", "/%zz", "relative",
         "https://example.org/a?b=c&amp;d", "/x?&#39;"]
_TITLES = ["", ' "t"', " 'it''s'", ' "a & b > d"', " (paren)", ' "\u00fc"', ' "q\\"q"']


def _markdown(rng, raw_html: bool) -> str:
    """A random body: the inline and block constructs cmark knows, odd characters, URLs
    urllib and lxml treat differently; with `raw_html`, also autolinks and "<"."""
    def inline() -> str:
        k = rng.random()
        if k < 0.55:
            return rng.choice(_WORDS)
        if k < 0.65:
            return f"[{rng.choice(_WORDS)}]({rng.choice(_URLS)}{rng.choice(_TITLES)})"
        if k < 0.72:
            return f"![{rng.choice(_WORDS)}]({rng.choice(_URLS)}{rng.choice(_TITLES)})"
        if k < 0.84:
            return rng.choice(["`%s`", "*%s*", "**%s**"]) % rng.choice(_WORDS)
        if k < 0.88:
            return f"[![{rng.choice(_WORDS)}]({rng.choice(_URLS)})]({rng.choice(_URLS)})"
        if k < 0.93:
            return rng.choice(["  \n", "\\\n", "\n", "[ref]"])
        return f"<{rng.choice(_URLS)}>" if raw_html else rng.choice(["1 < 2", "<b>x</b>"]) \
            if rng.random() < 0.2 else rng.choice(_WORDS)

    def para() -> str:
        return " ".join(inline() for _ in range(rng.randint(1, 12)))

    def block() -> str:
        k = rng.random()
        if k < 0.45:
            return para()
        if k < 0.52:
            return "#" * rng.randint(1, 6) + " " + para()
        if k < 0.60:
            return "\n".join(rng.choice(["-", "*", "1.", "3)"]) + " " + para()
                             for _ in range(rng.randint(1, 4)))
        if k < 0.66:
            return "> " + para() + "\n>\n> " + para()
        if k < 0.72:
            return "```%s\n%s\n```" % (rng.choice(["", "python", 'a"b', "x&y"]), para())
        if k < 0.76:
            return "    " + para()
        if k < 0.80:
            return rng.choice(["---", "***", "-", "- \n- x"])
        if k < 0.84:
            return f"[ref]: {rng.choice(_URLS)}{rng.choice(_TITLES)}"
        return "Setext\n" + rng.choice(["===", "---"])
    return "\n\n".join(block() for _ in range(rng.randint(0, 6)))


def _through_lxml(body: str, page_url: str, summary: str, trusted: bool = False
                  ) -> tuple[str, str]:
    """The plain way: cmark, nh3 (unless trusted), lxml."""
    body = content._NUMERIC_REFERENCE.sub(content._xml_safe_reference, body)
    html = content.markdown_to_html(body)
    root = content._tree(html, page_url) if trusted else \
        content._tree(content._sanitized(html), page_url, sanitized=True)
    return content.clean(content._html(root)), \
        content.clean(summary or content._first_paragraph(root))


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("raw_html", [False, True])
def test_bodies_without_raw_html_render_as_through_lxml(raw_html, trusted):
    """Differential test: `render` skips nh3 and lxml for cmark's own markup; over random
    bodies its output must be exactly the sanitized (or, trusted, the plain) lxml round
    trip's, and the shortcut must be taken for a good share of them (else this test
    proves nothing)."""
    import random

    rng = random.Random(11 + raw_html)
    pages = ["http://localhost:8000/articles/x/", "https://news.example.com/a/b/",
             "HTTPS://Host.example/\u00dc/"]
    plain = 0
    for _ in range(4000):
        body, page = _markdown(rng, raw_html), rng.choice(pages)
        summary = "" if rng.random() < 0.8 else "Given."
        assert content.render((body, page, summary), trusted) == \
            _through_lxml(body, page, summary, trusted), repr(body)
        cleaned = content._NUMERIC_REFERENCE.sub(content._xml_safe_reference, body)
        plain += "<" not in cleaned and \
            content._plain(content.markdown_to_html(cleaned), page, trusted) is not None
    assert plain > 1000


@pytest.mark.parametrize("body, page", [
    ('![a "b"](/m.png)', "https://n.test/a/"),    # '"' in an attribute: lxml may quote it
    ("- \n- x", "https://n.test/a/"),             # an empty <li>: lxml drops its end tag
    ("[[x](/a)[y]](/b)", "https://n.test/a/"),    # cmark nests links; lxml's parser won't
    ("[x](y)", "https://n.test/\u00fc/"),          # a URL lxml percent-encodes
    ("a&#13;b", "https://n.test/a/"),             # a carriage return: lxml's parser makes "\n"
])
def test_what_lxml_writes_otherwise_goes_the_lxml_way(body, page):
    html = content.markdown_to_html(body)
    assert content._plain(html, page) is None
    assert content.render((body, page, "")) == _through_lxml(body, page, "")


@pytest.mark.parametrize("url", [
    "https://example.org/a", "HTTP://EXAMPLE.ORG/Up", "http://x:99999/a", "http://x:80/b?c#d",
    "http://1.2.3.999/p", "http://1.2.3.4/p", "https://xn--zz.example/x", "http://[::1]/x",
    "http://[x/a", "https://user:pw@host.example:8080/p?q=1&r=%zz#f", "http://a_b.example/%zz",
    "https:///nohost", "http://:80/", "mailto:desk@news.example", "tel:+98-21-555",
    "javascript:alert(1)", "JavaScript:alert(1)", "data:image/png;base64,AAAA",
    "ftp://f.example/x", "foo:bar", "https://b\u00fccher.example/p", "https:///nohost/x",
    "http://a\\b.example/x", "http://host.example\\p"])
def test_the_fast_paths_url_verdicts_are_nh3s(url):
    """`_kept_by_nh3` remembers a web URL's verdict by scheme and authority: for each URL,
    first asked and then remembered (under another path), it must be nh3's own."""
    import nh3

    own = "href=" in nh3.clean(f'<a href="{escape(url)}">x</a>')
    content._VERDICTS.clear()
    assert content._kept_by_nh3([url]) == own
    assert content._kept_by_nh3([url, url + "x"]) == own          # remembered
    assert content._kept_by_nh3(["https://example.org/", url]) == own


def test_the_lxml_free_path_is_taken_for_plain_prose():
    body = "He said \"yes\" & it's *done*.  \nNext ![pic](/m/a.jpg \"t\") [l](x?a=1&b=2)\n\n---\n"
    page = "https://news.example.com/a/"
    html, first = content._plain(content.markdown_to_html(body), page)
    assert html == ("<p>He said \"yes\" &amp; it's <em>done</em>.<br>\nNext <img src="
                    "\"https://news.example.com/m/a.jpg\" alt=\"pic\" title=\"t\"> <a href="
                    "\"https://news.example.com/a/x?a=1&amp;b=2\">l</a></p>\n<hr>")
    assert first() == "He said \"yes\" & it's done. Next l"
    assert content.render((body, page, "")) == _through_lxml(body, page, "")


# -- the body cache follows the renderer's code and libraries, and the site's trust ----------

@pytest.fixture
def start(tmp_path):
    from feedsvc import settings
    from feedsvc.live import Service

    services = []

    def start(data):
        service = Service(settings.resolve({"data_dir": str(data.root), "watch": False,
                                            "state_dir": str(tmp_path / "state")}))
        services.append(service)
        return service
    yield start
    for s in services:
        s.close()


def _settled(data):
    import os
    import time

    data.article("plain", body="Prose with [a link](x).\n")
    data.article("raw", body="<b>raw</b> <script>alert(1)</script>\n",
                 date="2024-10-29T13:00:00+03:30")
    for f in data.root.rglob("*"):              # old enough for the checkpoint to trust
        os.utime(f, (time.time() - 60,) * 2)
    return data


@contextlib.contextmanager
def _replaced(versions, **attrs):
    """`versions` with `attrs` replaced for the block, its version cache cleared on entry
    and on exit.  Not monkeypatch: that is undone after the `start` fixture closes its
    services, whose checkpoints would cache the replaced versions for the next tests."""
    saved = {name: getattr(versions, name) for name in attrs}
    for name, value in attrs.items():
        setattr(versions, name, value)
    versions.version.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(versions, name, value)
        versions.version.cache_clear()


@pytest.mark.parametrize("library", ["nh3", "cmarkgfm", "lxml"])
def test_a_new_renderer_library_renders_every_body_again(data, start, library):
    from feedsvc import versions

    site = _settled(data)
    first = start(site)
    assert first.cache.renders == 2
    first.checkpoint()
    assert start(site).cache.renders == 0                 # same versions: cached
    real = versions.installed
    with _replaced(versions, installed=lambda name: "999.0" if name == library
                   else real(name)):
        upgraded = start(site)
        assert upgraded.cache.renders == 2
        assert {p: r.gzip.body for p, r in upgraded.resources.items()} == \
            {p: r.gzip.body for p, r in first.resources.items()}


@pytest.mark.parametrize("edited, renders", [("content.py", 2), ("datafile.py", 2),
                                             ("cli.py", 0)])
def test_an_edit_of_the_renderer_renders_every_body_again(data, start, tmp_path,
                                                           edited, renders):
    """Versions come from the source: an edit of a module that shapes bodies renders them
    again; an edit of another module (here it costs the checkpoint) does not."""
    import shutil

    from feedsvc import versions

    site = _settled(data)
    start(site).checkpoint()
    package = shutil.copytree(versions.PACKAGE, tmp_path / "feedsvc")
    with open(package / edited, "a") as f:
        f.write("# an edit\n")
    with _replaced(versions, PACKAGE=package):
        again = start(site)
        assert again.library.reads > 0              # the checkpoint was not used
        assert again.cache.renders == renders


def test_trusting_editors_renders_again_both_ways(data, make_app):
    data.article("raw", body="<b>raw</b> <script>alert(1)</script>\n")
    app = make_app(data.root)
    service, client = app.extensions["feedsvc"], app.test_client()
    assert b"<script>" not in client.get("/articles/raw/").data
    assert b"&lt;script&gt;" not in client.get("/feeds/all.atom").data
    for trusted in (True, False):
        data.site(trusted_html=trusted)
        service.refresh()
        assert (b"<script>alert(1)</script>" in client.get("/articles/raw/").data) == trusted
        assert (b"&lt;script&gt;alert(1)" in client.get("/feeds/all.atom").data) == trusted


def test_trusted_html_must_be_a_boolean(data):
    from feedsvc import loader
    from feedsvc.model import DataError

    with pytest.raises(DataError, match="'trusted_html' must be true or false"):
        loader.parse_site("site.yml", "title: T\nbase_url: https://n.example/\n"
                                      "trusted_html: 'yes'\n")
