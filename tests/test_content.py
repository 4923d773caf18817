"""Article bodies: references to characters XML forbids never break a feed."""
from __future__ import annotations

import ctypes

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


def test_a_link_urllib_cannot_read_keeps_the_body():
    from feedsvc import content

    for link in ("http://[x", "https://[x"):
        html, _ = content.render((f'<a href="{link}">odd</a> and [rel](a/b)\n',
                                  "https://news.example.com/articles/x/", ""))
        assert f'href="{link}"' in html
        assert 'href="https://news.example.com/articles/x/a/b"' in html


def test_a_srcset_candidate_urllib_cannot_read_keeps_the_body():
    from feedsvc import content

    html, _ = content.render(('<img srcset="https://[x 1x, b.jpg 2x" src="a.jpg">\n',
                              "https://news.example.com/articles/x/", ""))
    assert 'srcset="https://[x 1x, https://news.example.com/articles/x/b.jpg 2x"' in html


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
    """content.markdown_to_html calls cmark through cmarkgfm's bindings to free the buffer
    (see above): it must give exactly what cmarkgfm's own function gives."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    assert content.markdown_to_html(body) == \
        cmarkgfm.markdown_to_html(body, options=Options.CMARK_OPT_UNSAFE)
