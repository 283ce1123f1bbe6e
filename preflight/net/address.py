"""What an address string is: an IP literal (no lookup needed) and whether it is loopback."""

from __future__ import annotations

import ipaddress


def is_address(text: str) -> bool:
    """``10.0.0.1`` or ``fe80::1%eth0`` rather than a host name.

    >>> is_address("10.77.0.1"), is_address("gpu01")
    (True, False)
    """
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1 (a name is never loopback here: resolve it first).

    >>> is_loopback("127.0.1.1"), is_loopback("::1"), is_loopback("10.0.0.1"), is_loopback("gpu01")
    (True, True, False, False)
    """
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
