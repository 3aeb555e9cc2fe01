"""Where a webhook may be sent: the URL rules and the address check (SSRF).

A receiver URL is ``https`` (``http`` only outside production), carries no credentials, and its
host is a name or a canonical IP literal (``2130706433`` or ``0x7f.1`` are refused: resolvers read
them as 127.0.0.1). The host is resolved ONCE; every address must be public (not loopback,
private, link-local, CGNAT, metadata, multicast, reserved, unspecified, IPv4-mapped or
IPv4-translated IPv6), unless it lies in DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS (refused in production).
The caller connects to the checked address, never to the name again (no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

RESOLVE_TIMEOUT_SECONDS = 5.0
MAX_ADDRESSES = 16

# Ranges that ipaddress may call global but that reach inside a network or embed an IPv4 one.
_ALWAYS_REFUSED = [ipaddress.ip_network(cidr) for cidr in (
    "0.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]
# Looks like a number a resolver would turn into an address (decimal, octal, hex, 1-4 parts).
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)

_resolver_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


class UrlRefused(Exception):
    """The URL can never be a receiver (scheme, credentials, malformed host)."""

    error_class = "url_refused"


class AddressRefused(Exception):
    """The host resolves to an address a webhook must not reach (or does not resolve)."""

    error_class = "address_refused"


class ResolutionFailed(AddressRefused):
    error_class = "dns"


@dataclass(frozen=True)
class CheckedTarget:
    scheme: str
    host: str  # the name for Host, SNI and certificate verification
    port: int
    path: str  # path and query, as sent
    address: str  # the checked address the connection goes to


def _allowed_networks():
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS]


def address_is_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return False  # never: a mapped address is an IPv4 address in disguise
    if any(ip.version == net.version and ip in net for net in _allowed_networks()):
        return True
    if any(ip.version == net.version and ip in net for net in _ALWAYS_REFUSED):
        return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)


def url_parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable receiver URL, or UrlRefused."""
    if not isinstance(url, str) or len(url) > 2048 or any(ch.isspace() for ch in url):
        raise UrlRefused("the URL is not a single absolute URL of at most 2048 characters")
    if not url.isascii() or not url.isprintable():
        # http.client cannot send a non-ASCII request line (UnicodeEncodeError at every attempt).
        raise UrlRefused("the URL must be printable ASCII: percent-encode the path and query "
                         "(%C3%A9 for \u00e9) and write an international host name in its xn-- form")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    allowed = {"https", "http"} if settings.DPP_WEBHOOK_ALLOW_HTTP else {"https"}
    if scheme not in allowed:
        raise UrlRefused("only https URLs are accepted" if scheme != "https" else "bad scheme")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not accepted")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("the URL has no host")
    if parts.fragment:
        raise UrlRefused("the URL must not carry a fragment")
    if ":" not in host and _NUMERIC_HOST.match(host):
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = None
        if canonical != host:
            raise UrlRefused("a numeric host must be a canonical dotted-quad address")
    if ":" not in host:
        try:
            host.encode("idna")
        except UnicodeError:
            raise UrlRefused("the host is not a valid name") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def resolve(host: str, port: int, *, resolver=None) -> list[str]:
    """All addresses of ``host``, once, bounded in time and count."""
    try:
        ipaddress.ip_address(host)
        return [host]  # a literal: nothing to resolve
    except ValueError:
        pass
    resolver = resolver or _system_resolve
    future = _resolver_pool.submit(resolver, host, port)
    try:
        addresses = future.result(timeout=RESOLVE_TIMEOUT_SECONDS)
    except FutureTimeout:
        raise ResolutionFailed(f"resolving the host took over {RESOLVE_TIMEOUT_SECONDS:g} s") from None
    except (OSError, UnicodeError) as error:
        raise ResolutionFailed(f"the host does not resolve ({type(error).__name__})") from None
    unique = list(dict.fromkeys(addresses))[:MAX_ADDRESSES]
    if not unique:
        raise ResolutionFailed("the host resolves to no address")
    return unique


def target_check(url: str, *, resolver=None) -> CheckedTarget:
    """Parse, resolve once and check every address; the target names the address to connect to."""
    scheme, host, port, path = url_parse(url)
    addresses = resolve(host, port, resolver=resolver)
    for address in addresses:
        try:
            allowed = address_is_allowed(address)
        except ValueError:
            allowed = False
        if not allowed:
            raise AddressRefused("the host resolves to an address that is not public")
    return CheckedTarget(scheme=scheme, host=host, port=port, path=path, address=addresses[0])
