"""Secrets never leave the process: every message, log line and file the endpoint client produces goes through a
`Redactor` first.

A server's error body may repeat the request's headers (an Authorization header with the API key) or its URL (with
a key in the query string); a reply may echo either. The redactor replaces the known secret values (the API key,
every extra header value) and anything shaped like a credential (a bearer token, an `Authorization:` header, a
query-string parameter named like a key) with `[redacted]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


REDACTED = "[redacted]"
# query-string parameters whose value is a credential (Azure's api-key, SAS signatures, OAuth tokens, ...)
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:key|token|secret|sig|signature|password|passwd|auth|credential)[A-Za-z0-9_.-]*"
_PATTERNS = (
    # Authorization: Bearer sk-..., authorization=Basic ..., "Authorization": "..." (any quoting or separator)
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|token)\s+)?[^\s'\",;&]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s'\",;&]+"),
    re.compile(rf"(?i)([?&]{_SECRET_NAME}=)[^&\s'\"#]+"),
    re.compile(r"(?i)(['\"]?(?:x-)?api[-_]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&]+"),
)


class Redactor:
    """`redactor(text)`: `text` without any of `secrets` (values of 4 characters or more) or credential-shaped
    substrings."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        # longest first, so that a secret containing another is replaced whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
        return text

    def url(self, url: str) -> str:
        """A URL as it may be shown: credential query values and user:password@ removed."""
        return re.sub(r"//[^/@\s]+@", "//", self(url))
