"""Rates, sizes, times and percentages as people write them in a QoS policy, read into
plain integers and floats: ``10mbit`` (bits per second), ``64kb`` (bytes), ``50ms``
(microseconds), ``0.5%`` (percent).

tc's own spelling is followed where it is unambiguous: ``kbit``/``mbit``/``gbit`` are
decimal (1000), sizes ``kb``/``mb`` are 1024 bytes as tc reads them.  tc reads ``mbps`` as
megaBYTES per second, which people rarely mean: it is refused with the bit spelling to use
instead.
"""
from __future__ import annotations

import re

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_RATE = re.compile(_NUMBER + r"(bit|kbit|mbit|gbit)")
_SIZE = re.compile(_NUMBER + r"(b|kb|mb)")
_TIME = re.compile(_NUMBER + r"(us|ms|s)")
_PERCENT = re.compile("(-?" + _NUMBER[1:] + r"(%)")
_RATE_SCALE = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_SIZE_SCALE = {"b": 1, "kb": 1024, "mb": 1024 * 1024}
_TIME_SCALE = {"us": 1, "ms": 1000, "s": 1_000_000}
MIN_RATE, MAX_RATE = 8_000, 10 * 10**9  # bits per second: an OpenFlow kbps meter's floor; 10gbit
MAX_TIME = 60_000_000  # us: a minute of delay is a broken link, not a policy


def _read(v, pattern: re.Pattern, example: str, what: str) -> tuple[float, str]:
    """(number, unit) of ``v`` as ``pattern`` reads it; ValueError saying what to write."""
    if not isinstance(v, str):
        raise ValueError(f"write it with its unit, e.g. {example}")
    text = v.strip().lower()
    m = pattern.fullmatch(text)
    if m is None:
        if pattern is _RATE and text.endswith("bps"):
            raise ValueError(f"{v!r}: write bits per second ({text[:-3]}bit); tc reads "
                             f"'bps' as bytes per second, which is ambiguous")
        raise ValueError(f"{v!r} is not {what}, e.g. {example}")
    return float(m[1]), m.group(m.lastindex)


def rate(v) -> int:
    """Bits per second, from ``10mbit``."""
    n, unit = _read(v, _RATE, "10mbit", "a rate: a number and bit, kbit, mbit or gbit")
    bits = round(n * _RATE_SCALE[unit])
    if not MIN_RATE <= bits <= MAX_RATE:
        raise ValueError(f"{v!r}: a rate is from 8kbit to 10gbit")
    return bits


def size(v) -> int:
    """Bytes, from ``64kb``."""
    n, unit = _read(v, _SIZE, "64kb", "a size: a number and b, kb or mb (bytes)")
    b = round(n * _SIZE_SCALE[unit])
    if not 1 <= b <= 64 * 1024 * 1024:
        raise ValueError(f"{v!r}: a burst is from 1b to 64mb")
    return b


def duration(v) -> int:
    """Microseconds, from ``50ms``."""
    n, unit = _read(v, _TIME, "50ms", "a time: a number and us, ms or s")
    us = round(n * _TIME_SCALE[unit])
    if us > MAX_TIME:
        raise ValueError(f"{v!r}: at most 60s")
    return us


def percent(v) -> float:
    """Percent, from ``0.5%``."""
    p, _ = _read(v, _PERCENT, "0.5%", "a percentage: a number and %")
    if not 0 <= p <= 100:
        raise ValueError(f"{v!r}: a percentage is from 0% to 100%")
    return p


def show_rate(bits: int) -> str:
    """The shortest exact spelling of a rate: 10mbit, 1500kbit."""
    for unit in ("gbit", "mbit", "kbit"):
        if bits % _RATE_SCALE[unit] == 0:
            return f"{bits // _RATE_SCALE[unit]}{unit}"
    return f"{bits}bit"


def show_time(us: int) -> str:
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"
