"""Where the hub may send requests: checked on a stubbed resolver, so no test ever sends
a request outside 127.0.0.0/8 (the refusals below connect to nothing)."""
from __future__ import annotations

import pytest

from feedsvc.deliver import Sender
from feedsvc.netpolicy import NetPolicy, Refused, system_resolver


def resolving_to(*addresses: str):
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return list(addresses)
    resolve.asked = asked                   # type: ignore[attr-defined]
    return resolve


REFUSED = ["127.0.0.1", "127.1.2.3", "10.1.2.3", "172.16.0.1", "192.168.1.1",
           "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
           "240.0.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
           "::ffff:169.254.169.254", "2001:db8::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused_by_default(address):
    policy = NetPolicy(resolver=resolving_to(address))
    assert not policy.allowed(address)
    with pytest.raises(Refused, match="not a public address"):
        policy.target("https://callback.example/cb")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1", "fc00::1"])
def test_allow_private_admits_loopback_and_private(address):
    assert NetPolicy(allow_private=True).allowed(address)


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0",
                                     "::ffff:169.254.169.254"])
def test_allow_private_still_refuses_link_local_multicast_unspecified(address):
    assert not NetPolicy(allow_private=True).allowed(address)


def test_the_checked_address_is_the_one_connected_to_with_the_name_as_host_and_sni():
    resolve = resolving_to("10.0.0.5", "93.184.216.34", "2606:2800:220:1::1")
    target = NetPolicy(resolver=resolve).target("https://cb.example:8443/hook?x=1#frag")
    assert target.url == "https://93.184.216.34:8443/hook?x=1"
    assert target.host == "cb.example:8443" and target.server_name == "cb.example"
    assert resolve.asked == [("cb.example", 8443)]          # resolved once
    six = NetPolicy(resolver=resolving_to("2606:2800:220:1::1")).target("http://cb.example/")
    assert six.url == "http://[2606:2800:220:1::1]/" and six.server_name is None


@pytest.mark.parametrize("url", ["ftp://cb.example/", "/relative", "http://user:pw@cb.example/",
                                 "http://cb.example:99999/", "http:///nohost",
                                 "http://cb.example/" + "x" * 2100])
def test_urls_that_are_not_plain_http_are_refused(url):
    with pytest.raises(Refused):
        NetPolicy(resolver=resolving_to("93.184.216.34")).target(url)


def test_a_name_that_does_not_resolve_is_refused():
    with pytest.raises(Refused, match="cannot be resolved"):
        system_resolver("no-such-host.invalid", 80)


def test_the_sender_refuses_before_connecting_when_the_name_turns_private():
    """DNS rebinding: whatever the name resolved to before, the address checked now is the
    one used; a private one ends the request before any connection."""
    def transport_never_called(request):
        raise AssertionError(f"connected to {request.url}")
    import httpx
    sender = Sender(NetPolicy(resolver=resolving_to("192.168.0.10")),
                    transport=httpx.MockTransport(transport_never_called))
    reply = sender.send("GET", "http://rebind.example/cb")
    assert reply.status == 0 and "not a public address" in reply.error


def test_the_sender_sends_to_the_address_with_host_header_and_no_redirects():
    import httpx
    seen = []

    def transport(request):
        seen.append((str(request.url), request.headers["host"], request.extensions))
        return httpx.Response(302, headers={"Location": "http://127.0.0.1/"},
                              stream=httpx.ByteStream(b"x" * 10))
    sender = Sender(NetPolicy(resolver=resolving_to("93.184.216.34")),
                    transport=httpx.MockTransport(transport))
    reply = sender.send("POST", "https://cb.example/hook", content=b"body")
    assert reply.status == 302 and not reply.ok         # not followed
    assert seen[0][0] == "https://93.184.216.34/hook" and seen[0][1] == "cb.example"
    assert seen[0][2]["sni_hostname"] == "cb.example"
