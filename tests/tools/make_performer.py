#!/usr/bin/env python3
"""Writes assets/models/performer.glb: the built-in venue's performer, a mannequin of boxes on
a humanoid skeleton whose nodes are named as Unity's HumanBodyBones (Hips, Spine, LeftUpperArm,
...), in a T-pose facing +Z, 1.75 m tall, its origin between its feet. Each box is a mesh node
under its bone, so the bones move it rigidly (no skinning): what motion capture does to the
bones is plain to see. Made for Parvis, CC0-1.0.

Run from the repository root: python3 tests/tools/make_performer.py
"""

import json
import struct

# Bone: (parent, offset from the parent's joint in metres). T-pose; the avatar's left is +X.
BONES = {
    "Hips": (None, (0.0, 0.95, 0.0)),
    "Spine": ("Hips", (0.0, 0.10, 0.0)),
    "Chest": ("Spine", (0.0, 0.15, 0.0)),
    "UpperChest": ("Chest", (0.0, 0.13, 0.0)),
    "Neck": ("UpperChest", (0.0, 0.15, 0.0)),
    "Head": ("Neck", (0.0, 0.09, 0.0)),
    "LeftUpperLeg": ("Hips", (0.10, -0.04, 0.0)),
    "LeftLowerLeg": ("LeftUpperLeg", (0.0, -0.42, 0.0)),
    "LeftFoot": ("LeftLowerLeg", (0.0, -0.41, 0.0)),
    "LeftToes": ("LeftFoot", (0.0, -0.06, 0.12)),
    "RightUpperLeg": ("Hips", (-0.10, -0.04, 0.0)),
    "RightLowerLeg": ("RightUpperLeg", (0.0, -0.42, 0.0)),
    "RightFoot": ("RightLowerLeg", (0.0, -0.41, 0.0)),
    "RightToes": ("RightFoot", (0.0, -0.06, 0.12)),
    "LeftShoulder": ("UpperChest", (0.04, 0.10, 0.0)),
    "LeftUpperArm": ("LeftShoulder", (0.14, 0.0, 0.0)),
    "LeftLowerArm": ("LeftUpperArm", (0.28, 0.0, 0.0)),
    "LeftHand": ("LeftLowerArm", (0.25, 0.0, 0.0)),
    "RightShoulder": ("UpperChest", (-0.04, 0.10, 0.0)),
    "RightUpperArm": ("RightShoulder", (-0.14, 0.0, 0.0)),
    "RightLowerArm": ("RightUpperArm", (-0.28, 0.0, 0.0)),
    "RightHand": ("RightLowerArm", (-0.25, 0.0, 0.0)),
}

# Box on a bone: (centre relative to the bone's joint, size, material). Material 0 is the
# body, 1 the head and hands (so a hand's position reads at a glance).
BOXES = {
    "Hips": ((0.0, 0.02, 0.0), (0.30, 0.16, 0.18), 0),
    "Spine": ((0.0, 0.075, 0.0), (0.27, 0.15, 0.16), 0),
    "Chest": ((0.0, 0.065, 0.0), (0.32, 0.13, 0.19), 0),
    "UpperChest": ((0.0, 0.07, 0.0), (0.36, 0.14, 0.20), 0),
    "Neck": ((0.0, 0.045, 0.0), (0.08, 0.09, 0.08), 0),
    "Head": ((0.0, 0.11, 0.01), (0.19, 0.24, 0.21), 1),
    "LeftUpperLeg": ((0.0, -0.21, 0.0), (0.14, 0.42, 0.14), 0),
    "LeftLowerLeg": ((0.0, -0.205, 0.0), (0.11, 0.41, 0.11), 0),
    "LeftFoot": ((0.0, -0.04, 0.05), (0.10, 0.08, 0.22), 0),
    "RightUpperLeg": ((0.0, -0.21, 0.0), (0.14, 0.42, 0.14), 0),
    "RightLowerLeg": ((0.0, -0.205, 0.0), (0.11, 0.41, 0.11), 0),
    "RightFoot": ((0.0, -0.04, 0.05), (0.10, 0.08, 0.22), 0),
    "LeftShoulder": ((0.07, 0.0, 0.0), (0.14, 0.09, 0.10), 0),
    "LeftUpperArm": ((0.14, 0.0, 0.0), (0.28, 0.09, 0.09), 0),
    "LeftLowerArm": ((0.125, 0.0, 0.0), (0.25, 0.075, 0.075), 0),
    "LeftHand": ((0.08, 0.0, 0.0), (0.16, 0.04, 0.09), 1),
    "RightShoulder": ((-0.07, 0.0, 0.0), (0.14, 0.09, 0.10), 0),
    "RightUpperArm": ((-0.14, 0.0, 0.0), (0.28, 0.09, 0.09), 0),
    "RightLowerArm": ((-0.125, 0.0, 0.0), (0.25, 0.075, 0.075), 0),
    "RightHand": ((-0.08, 0.0, 0.0), (0.16, 0.04, 0.09), 1),
}


def unit_cube():
    """A cube from -0.5 to 0.5 with flat normals: 24 vertices, 36 indices."""
    positions, normals, indices = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = [0.0, 0.0, 0.0]
            n[axis] = sign
            u, v = [(axis + 1) % 3, (axis + 2) % 3]
            base = len(positions)
            for a, b in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
                p = [0.0, 0.0, 0.0]
                p[axis] = 0.5 * sign
                p[u], p[v] = a, b
                positions.append(p)
                normals.append(n)
            quad = [0, 1, 2, 0, 2, 3] if sign > 0 else [0, 2, 1, 0, 3, 2]
            indices += [base + i for i in quad]
    return positions, normals, indices


def main():
    positions, normals, indices = unit_cube()
    binary = b"".join(struct.pack("<3f", *p) for p in positions)
    binary += b"".join(struct.pack("<3f", *n) for n in normals)
    binary += b"".join(struct.pack("<H", i) for i in indices)
    while len(binary) % 4:
        binary += b"\0"
    nodes, names = [], list(BONES)
    for name in names:
        node = {"name": name, "translation": list(BONES[name][1]), "children": []}
        nodes.append(node)
    for name in names:
        parent = BONES[name][0]
        if parent is not None:
            nodes[names.index(parent)]["children"].append(names.index(name))
    for name, (centre, size, material) in BOXES.items():
        nodes.append({"name": name + "_shape", "mesh": material, "translation": list(centre), "scale": list(size)})
        nodes[names.index(name)]["children"].append(len(nodes) - 1)
    for node in nodes:
        if not node.get("children"):
            node.pop("children", None)
    nodes.append({"name": "performer", "children": [0]})
    count = len(positions)
    document = {
        "asset": {"version": "2.0", "generator": "parvis tests/tools/make_performer.py",
                  "copyright": "CC0-1.0, made for Parvis"},
        "scene": 0,
        "scenes": [{"name": "performer", "nodes": [len(nodes) - 1]}],
        "nodes": nodes,
        "meshes": [
            {"name": "body", "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": 0}]},
            {"name": "skin", "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": 1}]},
        ],
        "materials": [
            {"name": "costume", "pbrMetallicRoughness": {"baseColorFactor": [0.16, 0.32, 0.62, 1.0],
                                                        "metallicFactor": 0.0, "roughnessFactor": 0.6}},
            {"name": "skin", "pbrMetallicRoughness": {"baseColorFactor": [0.93, 0.78, 0.62, 1.0],
                                                     "metallicFactor": 0.0, "roughnessFactor": 0.7}},
        ],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 12 * count, "target": 34962},
            {"buffer": 0, "byteOffset": 12 * count, "byteLength": 12 * count, "target": 34962},
            {"buffer": 0, "byteOffset": 24 * count, "byteLength": 2 * len(indices), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3",
             "min": [-0.5, -0.5, -0.5], "max": [0.5, 0.5, 0.5]},
            {"bufferView": 1, "componentType": 5126, "count": count, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": len(indices), "type": "SCALAR"},
        ],
    }
    text = json.dumps(document, separators=(",", ":")).encode()
    while len(text) % 4:
        text += b" "
    glb = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + 8 + len(binary))
    glb += struct.pack("<I4s", len(text), b"JSON") + text
    glb += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    with open("assets/models/performer.glb", "wb") as out:
        out.write(glb)
    print(f"assets/models/performer.glb: {len(glb)} bytes, {len(BONES)} bones")


if __name__ == "__main__":
    main()
