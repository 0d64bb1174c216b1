"""Human sizes ("512MiB", "8GiB") as byte counts, and back."""

from __future__ import annotations

import re

_BINARY = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)

MIB = 1024**2
GIB = 1024**3
SIZE_HINT = "a size such as 512MiB, 8GiB or a whole number of bytes"


def parse_size(value: object) -> int:
    """Bytes from an int or a string in IEC units (KiB, MiB, GiB, TiB) or Docker's k/m/g/t.

    Decimal units (MB, GB) are refused rather than guessed: Docker reads "8g" as 8 GiB, while
    "8GB" means 8 * 10^9 bytes to most tools, and a limit that silently differs by 7 % is worse
    than an error that says which one to write.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected {SIZE_HINT}")
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a size; expected {SIZE_HINT}")
    number, prefix, suffix = match.groups()
    prefix, suffix = prefix.lower(), suffix.lower()
    if suffix == "b" and prefix:
        raise ValueError(f"decimal unit {prefix.upper()}B is ambiguous; write {number}{prefix.upper()}iB")
    if suffix == "i":
        raise ValueError(f"incomplete unit; write {number}{prefix.upper()}iB")
    result = float(number) * _BINARY[prefix]
    if result != int(result):
        raise ValueError("a size must be a whole number of bytes")
    return int(result)


def format_size(size: int) -> str:
    """The largest exact IEC unit: 536870912 -> '512MiB'."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# Rates in bits per second, written the way tc writes them (decimal: 1mbit = 10^6 bit/s).
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)\s*$", re.IGNORECASE)
RATE_HINT = "a rate in bits per second such as 40mbit, 500kbit or 1gbit"


def parse_rate(value: object) -> int:
    """Bits per second from an int or a string such as '40mbit' or '40Mbps' (decimal prefixes, as tc)."""
    if isinstance(value, bool):
        raise ValueError(f"expected {RATE_HINT}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a rate must be above zero")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected {RATE_HINT}")
    match = _RATE.match(value)
    if not match:
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*[kmg]?i?b(/s|ps)?\s*", value, re.IGNORECASE):
            raise ValueError(f"rates are in bits, not bytes; expected {RATE_HINT} (8mbit = 1MB/s)")
        raise ValueError(f"not a rate; expected {RATE_HINT}")
    number, prefix, _ = match.groups()
    result = float(number) * _RATE_UNITS[prefix.lower() + "bit"]
    if result < 8000:
        raise ValueError("a rate below 8kbit is not a usable limit")
    return int(result)


def format_rate(rate: int) -> str:
    """The largest exact unit, in tc's syntax: 40000000 -> '40mbit'."""
    for unit in ("gbit", "mbit", "kbit"):
        if rate % _RATE_UNITS[unit] == 0:
            return f"{rate // _RATE_UNITS[unit]}{unit}"
    return f"{rate}bit"
