import feedparser


def test_bundled_site_feed_parses(make_app, bundled):
    client = make_app(bundled.root).test_client()
    resp = client.get("/feeds/all.atom")
    assert resp.status_code == 200
    parsed = feedparser.parse(resp.data)
    assert parsed.bozo == 0
    assert len(parsed.entries) == 12
