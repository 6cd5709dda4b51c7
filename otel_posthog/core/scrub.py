"""Secrets out of error text: exception messages and tracebacks, before they leave.

Pure functions (no I/O), run on the export worker when a request's ``api_error`` and
``$exception`` events are mapped, so the spool and PostHog only ever see the scrubbed
text (and by :mod:`otel_posthog.sdk.span_scrub` when a span records an exception, for other
exporters). What is masked (each replaced by ``REDACTED``; the words around it stay):

* URL userinfo (``https://user:pass@host`` -> ``https://REDACTED@host``, DSNs such as
  ``postgresql://user:secret@db/app`` too) and query values (``?api_key=REDACTED``,
  also the bare ``/path?token=...`` urllib3 puts in its messages); hosts and paths stay.
* ``Authorization`` / ``Proxy-Authorization`` / ``Cookie`` / ``Set-Cookie`` /
  ``X-API-Key`` header text, ``Bearer`` / ``Basic`` credentials, JWT-shaped tokens and
  well-known key prefixes (``phx_``, ``sk-``, ``ghp_``, ``xoxb-``, ``AKIA``).
* ``key=value``, ``key: value``, ``"key": "value"`` and ``'key': 'value'`` pairs whose
  key names a secret (password, passwd, pwd, secret, token, api_key, access_key,
  private_key, client_secret, session, cookie, credential, ...).
* pydantic's ``input_value=...`` (the rejected input, whatever the field).

Not caught: a free-form secret with no key name or known shape ("my password is x"), and
a secret already cut in half before it reaches us. ``OTEL_POSTHOG_SCRUB_PATTERNS`` adds
patterns; ``OTEL_POSTHOG_SCRUB_SECRETS=false`` turns scrubbing off.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

REDACTED = "REDACTED"

_KEYWORDS = (
    r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|session|sessid|cookie|credential|signature"
    r"|auth[_-]?key|jwt"
)
# a quoted value, or everything up to a delimiter
_VALUE = r"""(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[^\s,;&'"}\])]+)"""

_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]{0,30}://)([^\s/?#@'\"<>]+)@")
_QUERY = re.compile(r"\?([^\s=&#'\"<>?]+=[^\s&#'\"<>]*(?:&[^\s=&#'\"<>]*=?[^\s&#'\"<>]*)*)")
_QUERY_PAIR = re.compile(r"([^&=]+)=([^&]*)")
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|set-cookie|cookie|x-api-key)"
    r"""(["']?\s*[:=]\s*)"""
    r"""("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'"""
    r"|(?:(?:bearer|basic|token|digest)\s+)?[^\s,;]+(?:;\s*[^\s,;]+)*)"
)
_SCHEME_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]{6,}=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_\-]*")
_KEY_PREFIXES: tuple[str, ...] = (
    "phx_",
    "sk-",
    "sk_live_",
    "rk_live_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
)
_KEY_PREFIXES += ("xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "AKIA")
_KNOWN_KEYS = re.compile(
    r"\b(?:" + "|".join(re.escape(p) for p in _KEY_PREFIXES) + r")[A-Za-z0-9_\-]{10,}"
)
# a key starts at a token boundary and is at most 64 characters (no backtracking over
# long words); whether it names a secret is checked on the match
_PAIR = re.compile(rf"""(?<![\w.\-])([\w.\-]{{1,64}}["']?[ \t]*[:=][ \t]*)({_VALUE})""")
_SECRET_KEY = re.compile(_KEYWORDS, re.IGNORECASE)
_INPUT_VALUE = re.compile(r"(input_value=)(.*?)(?=, input_type=|\]\s*$|$)", re.MULTILINE)


def _mask_quoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


def _query(match: re.Match[str]) -> str:
    masked = _QUERY_PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}", match.group(1))
    return "?" + masked


def _header(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + _mask_quoted(match.group(3))


def _pair(match: re.Match[str]) -> str:
    if _SECRET_KEY.search(match.group(1)) is None:
        return match.group(0)
    return match.group(1) + _mask_quoted(match.group(2))


def _extra(pattern: re.Pattern[str], text: str) -> str:
    if not pattern.groups:
        return pattern.sub(REDACTED, text)

    def masked(match: re.Match[str]) -> str:  # only the capturing groups are secret
        out, at = [], match.start()
        for i in range(1, pattern.groups + 1):
            start, end = match.span(i)
            if start < 0 or start < at:
                continue
            out.append(match.string[at:start])
            out.append(REDACTED)
            at = end
        out.append(match.string[at : match.end()])
        return "".join(out)

    return pattern.sub(masked, text)


class Scrubber:
    """Masks the secrets of a text (see the module docstring); ``extra`` adds patterns."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        self.extra = tuple(re.compile(p) for p in extra)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        lower = text.lower()  # cheap checks in C decide which patterns can match at all
        if "://" in text and "@" in text:
            text = _USERINFO.sub(rf"\1{REDACTED}@", text)
        if "?" in text:
            text = _QUERY.sub(_query, text)
        if "authorization" in lower or "cookie" in lower or "x-api-key" in lower:
            text = _HEADER.sub(_header, text)
        if "bearer" in lower or "basic" in lower:
            text = _SCHEME_CREDENTIALS.sub(rf"\1\2{REDACTED}", text)
        if "eyJ" in text:
            text = _JWT.sub(REDACTED, text)
        if any(prefix in text for prefix in _KEY_PREFIXES):
            text = _KNOWN_KEYS.sub(REDACTED, text)
        if "=" in text or ":" in text:
            text = _PAIR.sub(_pair, text)
        if "input_value=" in text:
            text = _INPUT_VALUE.sub(rf"\1{REDACTED}", text)
        for pattern in self.extra:
            text = _extra(pattern, text)
        return text


def check_patterns(patterns: Sequence[str]) -> str | None:
    """The first pattern that is not a valid regular expression, with why; else None."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"{pattern!r}: {exc}"
    return None


@functools.lru_cache(maxsize=8)
def scrubber(extra: tuple[str, ...] = ()) -> Scrubber:
    """One compiled scrubber per set of extra patterns."""
    return Scrubber(extra)


def scrub(text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` with its secrets masked."""
    return scrubber(extra)(text)
