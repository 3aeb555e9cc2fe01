"""SSRF: the table of the issue, refused at registration and at every attempt, and the
connection goes only to the address that was checked (resolved once)."""

from __future__ import annotations

import pytest

from runs.webhooks import ssrf

PUBLIC = "93.184.216.34"


def public_then_private(host, port):
    return [PUBLIC, "10.0.0.5"]


# (url, resolver or None for the system's): every one must be refused.
REFUSED = [
    ("https://169.254.169.254/latest/meta-data/", None),
    ("https://[::ffff:127.0.0.1]/hooks", None),
    ("https://2130706433/hooks", None),
    ("https://0x7f.1/hooks", None),
    ("https://10.0.0.1/hooks", None),
    ("https://100.64.0.1/hooks", None),
    ("https://[fd00::1]/hooks", None),
    ("https://rebind.example/hooks", public_then_private),
    # and their relatives
    ("https://127.0.0.1/hooks", None),
    ("https://localhost/hooks", None),
    ("https://[::1]/hooks", None),
    ("https://0.0.0.0/hooks", None),
    ("https://017700000001/hooks", None),
    ("https://127.1/hooks", None),
    ("https://192.168.1.10/hooks", None),
    ("https://172.16.0.1/hooks", None),
    ("https://224.0.0.1/hooks", None),
    ("https://[fe80::1]/hooks", None),
    ("https://[64:ff9b::7f00:1]/hooks", None),
    ("https://[2002:7f00:1::1]/hooks", None),
    ("https://[::ffff:a9fe:a9fe]/hooks", None),
    ("https://user:pass@example.com/hooks", lambda h, p: [PUBLIC]),
    ("ftp://example.com/hooks", lambda h, p: [PUBLIC]),
    ("https://name.invalid/hooks", lambda h, p: (_ for _ in ()).throw(OSError("NXDOMAIN"))),
]


@pytest.fixture
def no_private_allowed(settings):
    settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []
    return settings


class TestTargetCheck:
    @pytest.mark.parametrize(("url", "resolver"), REFUSED, ids=[url for url, _ in REFUSED])
    def test_refuses(self, no_private_allowed, url, resolver):
        with pytest.raises((ssrf.UrlRefused, ssrf.AddressRefused)):
            ssrf.target_check(url, resolver=resolver)

    def test_accepts_a_public_name_and_connects_to_the_address_it_checked(self, no_private_allowed):
        target = ssrf.target_check("https://hooks.example/in?x=1", resolver=lambda h, p: [PUBLIC])

        assert (target.scheme, target.host, target.port, target.path, target.address) == (
            "https", "hooks.example", 443, "/in?x=1", PUBLIC)

    @pytest.mark.parametrize("url", ["https://2130706433/", "https://0x7f.1/", "https://[::ffff:127.0.0.1]/"])
    def test_numeric_and_mapped_forms_stay_refused_even_where_loopback_is_allowed(self, settings, url):
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = ["127.0.0.0/8"]

        with pytest.raises((ssrf.UrlRefused, ssrf.AddressRefused)):
            ssrf.target_check(url)

    def test_the_allow_list_lets_a_local_receiver_through(self, settings):
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = ["127.0.0.0/8"]

        assert ssrf.target_check("http://127.0.0.1:8080/hooks").address == "127.0.0.1"

    def test_plain_http_is_refused_where_only_https_is_allowed(self, settings):
        settings.DPP_WEBHOOK_ALLOW_HTTP = False

        with pytest.raises(ssrf.UrlRefused, match="https"):
            ssrf.target_check("http://hooks.example/in", resolver=lambda h, p: [PUBLIC])

    def test_the_host_is_resolved_once(self, no_private_allowed):
        calls = []

        def resolver(host, port):
            calls.append(host)
            return [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]

        ssrf.target_check("https://hooks.example/", resolver=resolver)

        assert calls == ["hooks.example"]

    @pytest.mark.parametrize("url", ["https://example.com/caf\u00e9", "https://example.com/in?q=\u00e9",
                                     "https://b\u00fccher.example/in", "https://example.com/a\x00b"])
    def test_refuses_a_url_that_is_not_printable_ascii(self, no_private_allowed, url):
        with pytest.raises(ssrf.UrlRefused, match="ASCII"):
            ssrf.url_parse(url)

    def test_accepts_a_percent_encoded_path_and_a_punycode_host(self, no_private_allowed):
        assert ssrf.url_parse("https://xn--bcher-kva.example/caf%C3%A9") == (
            "https", "xn--bcher-kva.example", 443, "/caf%C3%A9")
