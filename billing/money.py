"""Money at the boundary: 4-decimal USD strings to integer micros and back, with no float.

1 USD = 1_000_000 micros. Strings on the wire have at most 4 decimals, so every amount a client
sends is a multiple of 100 micros. Internal amounts (minimum fees) can have micro precision;
``micros_to_usd`` shows them at 4 decimals (half-up) for display only, and the exact integer is
always available beside it.
"""

from __future__ import annotations

import re

MICROS_PER_USD = 1_000_000
MAX_AMOUNT_MICROS = 10_000 * MICROS_PER_USD
MIN_RESERVATION_MICROS = 5_000  # $0.0050

_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,4})(?:\.([0-9]{1,4}))?$")


class MoneyFormatError(ValueError):
    """Raised with a message fit for the client; the caller names the field."""


def usd_to_micros(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str):
        raise MoneyFormatError("must be a decimal string such as \"0.5000\" (numbers are refused)")
    match = _AMOUNT.match(value)
    if match is None:
        raise MoneyFormatError("must be a non-negative decimal string with at most 4 decimals, e.g. \"0.5000\"")
    whole, fraction = match.group(1), match.group(2) or ""
    micros = int(whole) * MICROS_PER_USD + int(fraction.ljust(6, "0"))
    if micros > MAX_AMOUNT_MICROS:
        raise MoneyFormatError("must be at most 10000.0000")
    return micros


def micros_to_usd(micros: int) -> str:
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise TypeError("micros must be an int")
    sign = "-" if micros < 0 else ""
    hundredths_of_cents, remainder = divmod(abs(micros), 100)
    if remainder >= 50:  # half-up, display only
        hundredths_of_cents += 1
    whole, fraction = divmod(hundredths_of_cents, 10_000)
    return f"{sign}{whole}.{fraction:04d}"


def minimum_fee_micros(reserved_micros: int) -> int:
    """The fee charged for a failed or timed-out run (2% of the reservation, at least $0.005 and at most $0.10, never above the reservation), integer arithmetic."""
    return min(max(5_000, reserved_micros * 2 // 100), reserved_micros, 100_000)
