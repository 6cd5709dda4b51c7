"""Which outbound destinations may receive identity baggage (``posthog.*``).

A propagator is not told where a request goes. The HTTP client instrumentations (requests,
among others) start their CLIENT span before they inject, so the destination is read from
that span's ``url.full`` / ``http.url`` (else ``server.address`` /
``net.peer.name``). No CLIENT span, no URL, an unparsable URL: no identity (fail closed).

``OTEL_POSTHOG_PROPAGATE_IDENTITY_HOSTS`` lists what is allowed: host names (exact),
suffixes with a leading dot (``.internal`` matches ``api.internal``), IP addresses and
networks (``10.0.0.0/8``). Unset, internal hosts only (:data:`DEFAULT_SUFFIXES`,
:data:`DEFAULT_NETWORKS`, ``localhost`` and single-label names such as ``users-svc``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind

DEFAULT_SUFFIXES = (".internal", ".local", ".localhost", ".svc", ".cluster.local", ".home.arpa")
DEFAULT_NETWORKS = (
    "127.0.0.0/8",  # loopback
    "::1/128",
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",  # IPv6 unique local
)
_NAME = re.compile(r"^\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_URL_KEYS = ("url.full", "http.url")
_HOST_KEYS = ("server.address", "net.peer.name")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(entry: str) -> _Network | None:
    try:
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None


def check_entry(entry: str) -> str | None:
    """Why ``entry`` is not a host name, ``.suffix``, IP address or network; None if it is."""
    text = entry.strip().lower()
    if _network(text) is not None or _NAME.match(text.rstrip(".")):
        return None
    return (
        f"{entry!r} is not a host name, a .suffix, an IP address or a network "
        "(example: .internal,users-svc,10.0.0.0/8)"
    )


def _normal(host: str) -> str:
    return host.strip().lower().strip("[]").rstrip(".")


class HostPolicy:
    """Decides whether a host may receive identity; decisions are cached (bounded)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        entries = tuple(e for e in (x.strip().lower() for x in entries) if e)
        self.default = not entries
        if self.default:
            entries = (*DEFAULT_SUFFIXES, *DEFAULT_NETWORKS)
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        self._networks: list[_Network] = []
        for entry in entries:
            network = _network(entry)
            if network is not None:
                self._networks.append(network)
            elif entry.startswith("."):
                self._suffixes.append(entry.rstrip("."))
            else:
                self._names.add(entry.rstrip("."))
        self._cache: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        if not host:
            return False
        known = self._cache.get(host)
        if known is None:
            known = self._decide(_normal(host))
            if len(self._cache) >= 1024:
                self._cache.clear()
            self._cache[host] = known
        return known

    def _decide(self, host: str) -> bool:
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            mapped = getattr(address, "ipv4_mapped", None)
            candidates = [address] if mapped is None else [address, mapped]
            return any(a in n for a in candidates for n in self._networks if a.version == n.version)
        if host in self._names:
            return True
        if any(host.endswith(s) or host == s[1:] for s in self._suffixes):
            return True
        return self.default and (host == "localhost" or "." not in host)


_POLICIES: dict[tuple[str, ...], HostPolicy] = {}


def policy_for(entries: tuple[str, ...]) -> HostPolicy:
    policy = _POLICIES.get(entries)
    if policy is None:
        if len(_POLICIES) >= 16:
            _POLICIES.clear()
        policy = _POLICIES[entries] = HostPolicy(entries)
    return policy


def destination_host(span: Any) -> str | None:
    """The host an outbound CLIENT span is calling, from its attributes; None if unknown."""
    if getattr(span, "kind", None) is not SpanKind.CLIENT:
        return None
    attrs = getattr(span, "attributes", None)
    if not attrs:
        return None
    for key in _URL_KEYS:
        url = attrs.get(key)
        if url:
            try:
                return urlsplit(str(url)).hostname or None
            except ValueError:
                return None
    for key in _HOST_KEYS:
        host = attrs.get(key)
        if host:
            return str(host)
    return None
