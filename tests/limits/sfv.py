"""A strict parser for the RFC 8941 subset the RateLimit fields use (lists of string items
with integer or string parameters), so header syntax is checked, not eyeballed."""

from __future__ import annotations

import re

_ITEM = re.compile(r'"(?P<name>[\x20-\x21\x23-\x5b\x5d-\x7e]*)"(?P<params>(?:;[a-z*][a-z0-9_.*-]*=(?:-?\d{1,15}|"[^"\\]*"))*)')
_PARAM = re.compile(r';(?P<key>[a-z*][a-z0-9_.*-]*)=(?P<value>-?\d{1,15}|"[^"\\]*")')


def parse_list(value: str) -> list[tuple[str, dict[str, int | str]]]:
    """Parse an sf-list of string items with parameters; raise ValueError on any deviation."""
    items = []
    pos = 0
    while True:
        match = _ITEM.match(value, pos)
        if not match:
            raise ValueError(f"bad item at {pos}: {value!r}")
        params: dict[str, int | str] = {}
        for p in _PARAM.finditer(match.group("params")):
            raw = p.group("value")
            if p.group("key") in params:
                raise ValueError(f"duplicate parameter {p.group('key')!r}")
            params[p.group("key")] = raw.strip('"') if raw.startswith('"') else int(raw)
        items.append((match.group("name"), params))
        pos = match.end()
        if pos == len(value):
            return items
        sep = re.compile(r"[ \t]*,[ \t]*").match(value, pos)
        if not sep or sep.end() == len(value):
            raise ValueError(f"bad separator at {pos}: {value!r}")
        pos = sep.end()
