#!/usr/bin/env python3
"""Writes assets/models/fountain.gltf: the octagonal cloister fountain of the default venue.

Made by the Parvis project from code (no scan, no third-party data), CC0-1.0.
Run from the repository root: python3 tools/make_fountain.py
"""
import base64
import json
import math
import struct

SIDES = 8


def ring(radius, y, phase=math.pi / SIDES):
    return [(radius * math.cos(phase + 2 * math.pi * i / SIDES), y, radius * math.sin(phase + 2 * math.pi * i / SIDES)) for i in range(SIDES)]


def sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def norm(v):
    length = math.sqrt(sum(c * c for c in v)) or 1.0
    return tuple(c / length for c in v)


class Mesh:
    def __init__(self):
        self.pos, self.nrm = [], []

    def tri(self, a, b, c, outward):
        n = norm(cross(sub(b, a), sub(c, a)))
        if sum(x * y for x, y in zip(n, outward)) < 0:
            b, c, n = c, b, tuple(-x for x in n)
        self.pos += [a, b, c]
        self.nrm += [n, n, n]

    def quad(self, a, b, c, d, outward):
        self.tri(a, b, c, outward)
        self.tri(a, c, d, outward)

    def band(self, low, high, inward=False):
        """Side faces between two rings of the same count, facing out (or in)."""
        for i in range(SIDES):
            j = (i + 1) % SIDES
            mid = tuple((low[i][k] + low[j][k] + high[i][k] + high[j][k]) / 4 for k in range(3))
            out = (mid[0], 0.0, mid[2])
            if inward:
                out = tuple(-x for x in out)
            self.quad(low[i], low[j], high[j], high[i], out)

    def cap(self, r, up=True):
        """A flat polygon over a ring, facing up or down."""
        centre = (0.0, r[0][1], 0.0)
        for i in range(SIDES):
            self.tri(centre, r[i], r[(i + 1) % SIDES], (0, 1 if up else -1, 0))

    def annulus(self, outer, inner):
        for i in range(SIDES):
            j = (i + 1) % SIDES
            self.quad(outer[i], outer[j], inner[j], inner[i], (0, 1, 0))


stone, water = Mesh(), Mesh()
# Basin: octagonal wall with a rim, 3.2 m across, 0.6 m high.
stone.band(ring(1.6, 0.0), ring(1.6, 0.6))
stone.band(ring(1.35, 0.1), ring(1.35, 0.6), inward=True)
stone.annulus(ring(1.6, 0.6), ring(1.35, 0.6))
stone.cap(ring(1.35, 0.1))
# Plinth and column.
stone.band(ring(0.35, 0.1), ring(0.35, 0.35))
stone.cap(ring(0.35, 0.35))
stone.band(ring(0.16, 0.35), ring(0.16, 1.3))
# Upper bowl: a flared octagon with a shallow hollow filled with water.
stone.band(ring(0.2, 1.3), ring(0.7, 1.55))
stone.cap(ring(0.2, 1.3), up=False)
stone.band(ring(0.7, 1.55), ring(0.7, 1.65))
stone.annulus(ring(0.7, 1.65), ring(0.6, 1.65))
# Finial.
stone.band(ring(0.08, 1.6), ring(0.08, 1.95))
stone.cap(ring(0.08, 1.95))
# Water surfaces.
water.cap(ring(1.35, 0.48))
water.cap(ring(0.6, 1.6))

buffer = bytearray()
accessors, views, primitives = [], [], []
for material, mesh in enumerate([stone, water]):
    attrs = {}
    for name, data in (("POSITION", mesh.pos), ("NORMAL", mesh.nrm)):
        offset = len(buffer)
        for v in data:
            buffer += struct.pack("<3f", *v)
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(buffer) - offset, "target": 34962})
        acc = {"bufferView": len(views) - 1, "componentType": 5126, "count": len(data), "type": "VEC3"}
        if name == "POSITION":
            acc["min"] = [min(v[k] for v in data) for k in range(3)]
            acc["max"] = [max(v[k] for v in data) for k in range(3)]
        accessors.append(acc)
        attrs[name] = len(accessors) - 1
    primitives.append({"attributes": attrs, "material": material})

gltf = {
    "asset": {"version": "2.0", "generator": "parvis tools/make_fountain.py", "copyright": "Parvis project, CC0-1.0"},
    "scene": 0,
    "scenes": [{"name": "fountain", "nodes": [0]}],
    "nodes": [{"name": "fountain", "mesh": 0}],
    "meshes": [{"name": "fountain", "primitives": primitives}],
    "materials": [
        {"name": "limestone", "pbrMetallicRoughness": {"baseColorFactor": [0.80, 0.74, 0.63, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.85}},
        {"name": "water", "pbrMetallicRoughness": {"baseColorFactor": [0.16, 0.32, 0.40, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.08}},
    ],
    "buffers": [{"byteLength": len(buffer), "uri": "data:application/octet-stream;base64," + base64.b64encode(bytes(buffer)).decode()}],
    "bufferViews": views,
    "accessors": accessors,
}
with open("assets/models/fountain.gltf", "w") as f:
    json.dump(gltf, f, indent=1)
    f.write("\n")
print(f"wrote assets/models/fountain.gltf: {sum(len(m.pos) for m in (stone, water)) // 3} triangles")
