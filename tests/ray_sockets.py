"""Which addresses a set of processes listens on (Linux ``/proc``): the Ray tests check that
every Ray server they start listens on loopback only."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

_LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    # /proc prints each 32-bit word in the machine's (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def descendants(root: int) -> set[int]:
    """``root`` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found = {root}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def listening_addresses(pids: set[int]) -> dict[str, set[int]]:
    """Listening TCP address -> the processes of ``pids`` that hold it."""
    inodes: dict[str, set[int]] = {}
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:["):
                inodes.setdefault(link[8:-1], set()).add(pid)
    listening: dict[str, set[int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                host, port = fields[1].split(":")
                address = _address(host)
                mapped = getattr(address, "ipv4_mapped", None) or address
                listening.setdefault(f"{mapped}:{int(port, 16)}", set()).update(
                    inodes[fields[9]])
    return listening


def not_loopback(pids: set[int]) -> dict[str, set[int]]:
    """The listening addresses of ``pids`` that other machines could reach."""
    return {address: holders for address, holders in listening_addresses(pids).items()
            if not ipaddress.ip_address(address.rsplit(":", 1)[0]).is_loopback}
