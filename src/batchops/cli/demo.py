"""`batchops demo`: sample objects in a local folder and a manifest naming them."""

from __future__ import annotations

import os

from batchops.model.chunk import encode_key


def make_sample(root: str, count: int) -> str:
    """Write `count` small objects under `root/source` and return a CSV manifest's path.

    The manifest names bucket `demo-source`, which the demo maps to the folder.
    """
    source = os.path.join(root, "source")
    lines = []
    for i in range(count):
        key = f"photos/{i // 1000:03d}/sample {i:06d}.txt"
        path = os.path.join(source, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(f"sample object {i}\n".encode() * 8)
        lines.append(f"demo-source,{encode_key(key)}\n")
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return manifest
