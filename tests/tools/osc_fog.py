#!/usr/bin/env python3
"""Sends N OSC messages `/parvis/param/fog f VALUE` to HOST:PORT at RATE per second (values
cycle through 0.001 … 0.2, so every one changes the venue). Used by docs/benchmarks.md to fill
a venue's command log quickly; stdlib only.

    osc_fog.py HOST PORT N RATE
"""
import socket
import struct
import sys
import time


def osc_float(address: str, value: float) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (4 - len(b) % 4)
    return pad(address.encode()) + pad(b",f") + struct.pack(">f", value)


def main() -> None:
    host, port, n, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    for i in range(n):
        sock.sendto(osc_float("/parvis/param/fog", 0.001 + (i % 200) * 0.001), (host, port))
        ahead = start + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    print(f"sent {n} in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
