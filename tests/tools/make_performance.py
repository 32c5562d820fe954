#!/usr/bin/env python3
"""Writes assets/performances/evening.poses: a rehearsal of the built-in show "evening" for
its performer "singer", in Parvis's recording format (docs/performers.md), 15 updates a
second for the show's 70 seconds: still in the idle pose for four seconds, then swaying on
the prelude's 96 beats a minute with the arms rising, and the arms up, waving, in the finale.
Generated, not captured: what it shows is that a recording drives the avatar on the show's
clock. Made for Parvis, CC0-1.0.

Run from the repository root: python3 tests/tools/make_performance.py
"""

import math
import os
import struct

MAGIC = b"PARVIS-POSES 1\n"
BONES = ["Hips", "LeftUpperLeg", "RightUpperLeg", "LeftLowerLeg", "RightLowerLeg", "LeftFoot", "RightFoot",
         "Spine", "Chest", "Neck", "Head", "LeftShoulder", "RightShoulder", "LeftUpperArm", "RightUpperArm",
         "LeftLowerArm", "RightLowerArm"]
RATE = 15
LENGTH = 70.0
BEAT = 60.0 / 96.0


def about(axis, degrees):
    half = math.radians(degrees) / 2
    s = math.sin(half)
    return (axis[0] * s, axis[1] * s, axis[2] * s, math.cos(half))


def smooth(t, start, end):
    k = min(1.0, max(0.0, (t - start) / (end - start)))
    return k * k * (3 - 2 * k)


def pose(t):
    beat = math.sin(2 * math.pi * t / BEAT)
    bar = math.sin(2 * math.pi * t / (4 * BEAT))
    dance = smooth(t, 4.0, 8.0)
    finale = smooth(t, 40.0, 43.0)
    # The arms: -70° is down at the sides (the idle pose), 0 a T, +60 raised.
    arm = -70 + dance * (45 + 12 * bar) + finale * (85 + 10 * beat - 12 * bar)
    pose = {
        "Spine": about((0, 0, 1), dance * 5 * bar),
        "Head": about((1, 0, 0), dance * 8 * beat),
        "LeftUpperArm": about((0, 0, 1), arm),
        "RightUpperArm": about((0, 0, 1), -arm),
        "LeftLowerArm": about((0, 1, 0), dance * (20 + 15 * beat)),
        "RightLowerArm": about((0, 1, 0), -dance * (20 + 15 * beat)),
        "LeftUpperLeg": about((1, 0, 0), dance * 6 * beat),
        "RightUpperLeg": about((1, 0, 0), -dance * 6 * beat),
    }
    hips = (0.0, 0.95 - dance * 0.02 * (1 + beat), 0.0)
    return pose, hips


def record(t):
    bones, hips = pose(t)
    body = struct.pack("<d", t)
    name = b"singer"
    body += struct.pack("<B", len(name)) + name
    body += b"\0"  # no root
    body += struct.pack("<B", len(bones) + 1)
    body += struct.pack("<B", 0) + struct.pack("<4h", 0, 0, 0, 32767) + struct.pack("<3f", *hips)
    for bone, q in bones.items():
        body += struct.pack("<B", BONES.index(bone)) + struct.pack("<4h", *(round(c * 32767) for c in q))
    body += b"\0"  # no blendshapes
    return struct.pack("<I", len(body)) + body


def main():
    os.makedirs("assets/performances", exist_ok=True)
    out = MAGIC + b"".join(record(i / RATE) for i in range(int(LENGTH * RATE) + 1))
    with open("assets/performances/evening.poses", "wb") as f:
        f.write(out)
    print(f"assets/performances/evening.poses: {len(out)} bytes")


if __name__ == "__main__":
    main()
