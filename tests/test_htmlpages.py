"""The pages readers meet (htmlpages.py), through the app: subscribe pages, pagination,
the compact index, any script, dates, images, the 404 page, redirects and the favicon.
The feeds keep their bytes for every client: subscribe pages are pages of their own."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import lxml.html
import pytest

BASE = "https://news.example.com/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ATOM = "{http://www.w3.org/2005/Atom}"


def page(client, path: str):
    resp = client.get(path)
    assert resp.status_code == 200, path
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    return lxml.html.fromstring(resp.data)


@pytest.fixture
def client(make_app, data):
    data.author("jane-doe", name="Jane Doe", bio="Jane covers the world.",
                url="https://jane.example/")
    for i in range(7):
        data.article(f"story-{i}", date=f"2024-10-2{i}T13:00:00+03:30")
    data.article("farsi", title="گفت‌وگوی تهران و مسقط", language="fa",
                 date="2024-10-29T09:00:00+03:30", categories=["World", "ایران"],
                 image="/media/pic.png", image_alt="A bridge at dusk",
                 image_caption="The strait at dusk.")
    data.write("media/pic.png", b"\x89PNG\r\n\x1a\n" + bytes(100))
    data.site(page_size=3)
    return make_app(data.root).test_client()


def test_subscribe_page_lists_each_feed_with_copy_and_open_in(client):
    doc = page(client, "/category/world/subscribe/")
    assert doc.xpath("//main//h1")[0].text_content() == "Subscribe to World"
    for fmt in ("rss", "atom", "json"):
        url = f"{BASE}feeds/category/world.{fmt}"
        (field,) = doc.xpath(f"//input[@id='address-{fmt}']")
        assert field.get("value") == url and field.get("readonly") is not None
        assert doc.xpath(f"//button[@data-copy='address-{fmt}']")
        assert url in doc.xpath("//main//a/@href")                  # the feed itself
        assert client.get(url[len(BASE) - 1:]).status_code == 200
    hrefs = doc.xpath("//main//a/@href")
    rss = f"{BASE}feeds/category/world.rss"
    encoded = rss.replace(":", "%3A").replace("/", "%2F")
    for reader in ("https://feedly.com/i/subscription/feed/",
                   "https://www.inoreader.com/?add_feed=",
                   "https://www.newsblur.com/?url=",
                   "https://theoldreader.com/feeds/subscribe?url="):
        assert reader + encoded in hrefs, reader
    assert "feed:" + rss in hrefs
    # discovery links still point at the feeds; the latest items are previewed
    assert doc.xpath("//head/link[@rel='alternate']/@href")[0] == rss
    assert len(doc.xpath("//main/ul[last()]/li")) == 5
    assert not doc.xpath("//@onclick") and len(doc.xpath("//script")) == 1


def test_feed_buttons_lead_to_subscribe_pages_named_for_screen_readers(client):
    doc = page(client, "/category/world/")
    buttons = doc.xpath("//main//span[@class='feeds']/a")
    assert [b.get("href") for b in buttons] == [
        f"{BASE}category/world/subscribe/#{fmt}" for fmt in ("rss", "atom", "json")]
    assert [b.get("aria-label") for b in buttons] == [
        "World RSS feed", "World Atom feed", "World JSON Feed"]


def test_feeds_keep_their_bytes_whatever_the_client_accepts(client):
    plain = client.get("/feeds/all.rss")
    browser = client.get("/feeds/all.rss", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.data == plain.data and browser.headers["ETag"] == plain.headers["ETag"]
    assert "Vary" not in plain.headers or "Accept," not in plain.headers["Vary"] + ","


def test_the_opml_downloads(client):
    resp = client.get("/feeds.opml")
    assert resp.headers["Content-Disposition"] == 'attachment; filename="feeds.opml"'


def test_scope_pages_are_paginated_with_stable_urls_and_rel_links(client):
    first = page(client, "/category/world/")        # 8 articles, 3 a page
    assert first.xpath("//head/link[@rel='next']/@href") == [f"{BASE}category/world/page/2/"]
    assert not first.xpath("//head/link[@rel='prev']")
    second = page(client, "/category/world/page/2/")
    assert second.xpath("//head/link[@rel='prev']/@href") == [f"{BASE}category/world/"]
    assert second.xpath("//head/link[@rel='next']/@href") == [f"{BASE}category/world/page/3/"]
    last = page(client, "/category/world/page/3/")
    assert not last.xpath("//head/link[@rel='next']")
    titles = [x.xpath("//main/ul/li/a")[i].text_content()
              for x in (first, second, last) for i in range(len(x.xpath("//main/ul/li/a")))]
    assert len(titles) == len(set(titles)) == 8
    assert titles[0] == "گفت‌وگوی تهران و مسقط"                 # newest first
    assert client.get("/category/world/page/4/").status_code == 404
    assert client.get("/category/world/page/1/").status_code == 404   # page 1 is the page


def test_slashless_scope_paths_redirect_and_the_404_page_helps(client):
    for path in ("/category/world", "/author/jane-doe", "/category/world/page/2"):
        resp = client.get(path)
        assert resp.status_code == 308 and resp.headers["Location"] == path + "/"
    resp = client.get("/category/nope/")
    assert resp.status_code == 404
    doc = lxml.html.fromstring(resp.data)
    assert BASE in doc.xpath("//main//a/@href") and BASE + "subscribe/" in \
        doc.xpath("//main//a/@href")


def test_favicon_is_answered(client):
    resp = client.get("/favicon.ico")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/x-icon"
    assert resp.data[:4] == b"\0\0\1\0"                 # an ICO file
    assert client.get("/favicon.ico", headers={"If-None-Match": resp.headers["ETag"]}
                      ).status_code == 304


def test_any_script_lang_dir_and_isolation(client):
    doc = page(client, "/articles/farsi/")
    assert doc.get("lang") == "fa" and doc.get("dir") == "rtl"
    for chrome in doc.xpath("//nav | //aside"):     # the site's own words stay English
        assert (chrome.get("lang"), chrome.get("dir")) == ("en", "ltr")
    english = page(client, "/articles/story-1/")
    assert english.get("lang") == "en" and english.get("dir") is None
    (item,) = [li for li in page(client, "/").xpath("//main/ul/li")
               if "farsi" in li.xpath("a/@href")[0]]
    (bdi,) = item.xpath("a/bdi")
    assert bdi.get("lang") == "fa" and bdi.text_content() == "گفت‌وگوی تهران و مسقط"


def test_feeds_carry_the_article_language(client):
    atom = ET.fromstring(client.get("/feeds/all.atom").data)
    langs = {e.findtext(f"{ATOM}id").rsplit(":", 1)[1]: e.get(XML_LANG)
             for e in atom.iter(f"{ATOM}entry")}
    assert langs["farsi"] == "fa" and langs["story-1"] is None
    items = {i["url"].split("/")[-2]: i for i in json.loads(client.get("/feeds/all.json").data)[
        "items"]}
    assert items["farsi"]["language"] == "fa" and "language" not in items["story-1"]


def test_image_alt_and_caption_on_pages_and_in_feeds(client):
    doc = page(client, "/articles/farsi/")
    (img,) = doc.xpath("//article/figure/img")
    assert img.get("alt") == "A bridge at dusk"
    assert doc.xpath("//article/figure/figcaption")[0].text_content() == "The strait at dusk."
    atom = client.get("/feeds/all.atom").data.decode()
    assert f'<link href="{BASE}media/pic.png" rel="enclosure" type="image/png" ' \
        'length="108" title="A bridge at dusk"/>' in atom
    items = json.loads(client.get("/feeds/all.json").data)["items"]
    (pic,) = [i for i in items if "attachments" in i]
    assert pic["attachments"][0]["title"] == "A bridge at dusk"


def test_dates_in_the_site_zone_readable_with_iso_datetime(client):
    doc = page(client, "/articles/story-1/")
    (time,) = doc.xpath("//article//time")
    assert time.get("datetime") == "2024-10-21T13:00:00+03:30"
    assert time.text_content() == "21 October 2024, 13:00"


def test_author_page_shows_url_and_bio_and_pages_have_main(client):
    doc = page(client, "/author/jane-doe/")
    assert "Jane covers the world." in doc.text_content()
    assert "https://jane.example/" in doc.xpath("//main//a/@href")
    assert len(doc.xpath("//main")) == 1


def test_article_pages_have_a_subscribe_box(client):
    doc = page(client, "/articles/story-1/")
    hrefs = doc.xpath("//aside//a/@href")
    assert hrefs == [f"{BASE}subscribe/", f"{BASE}category/world/subscribe/",
                     f"{BASE}author/jane-doe/subscribe/"]
    for href in hrefs:
        assert client.get(href[len(BASE) - 1:]).status_code == 200


def test_index_is_latest_first_with_compact_directories(make_app, data):
    for i in range(12):                 # 12 categories, the first the largest
        for j in range(i + 1 if i == 0 else 1):
            data.article(f"a{i}-{j}", categories=[f"Topic {i:02}"],
                         date=f"2024-10-{10 + i}T13:00:00+03:30")
    client = make_app(data.root).test_client()
    doc = page(client, "/")
    headings = [h.text_content() for h in doc.xpath("//main/h2")]
    assert headings[:2] == ["Latest articles", "Categories"]
    categories = doc.xpath("//main/h2[.='Categories']/following-sibling::ul[1]/li/a")
    assert len(categories) == 8 and categories[0].text_content() == "Topic 00"
    assert f"{BASE}categories/" in doc.xpath("//main//a/@href")
    full = page(client, "/categories/")
    assert len(full.xpath("//main/ul/li")) == 12
