#!/usr/bin/env python3
"""Writes the hostile inputs of docs/reliability.md (issue #16) to a folder: images that once killed or stalled
the server, for the tests, the soak test and the fuzzers' seed corpora. Small files (the largest is 0.5 MB).
Usage: make_attacks.py OUT_DIR"""
import io
import os
import sys

from PIL import Image


def progressive_with_scans(count):
    """A 4000×4000 progressive JPEG whose smallest scan is repeated `count` times (libjpeg decodes every one)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000), (120, 130, 140)).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    i, scans = 2, []
    while data[i + 1] != 0xD9:
        length = int.from_bytes(data[i + 2:i + 4], "big")
        end = i + 2 + length
        if data[i + 1] == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            scans.append(data[i:end])
        i = end
    return data[:-2] + min(scans[1:], key=len) * count + b"\xff\xd9"


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    colour = (10, 200, 30)
    Image.new("RGB", (1, 100_000), colour).save(os.path.join(out, "thin_1x100000.png"), optimize=True)
    Image.new("RGB", (100_000, 1), colour).save(os.path.join(out, "thin_100000x1.png"), optimize=True)
    Image.new("RGB", (1, 3000), colour).save(os.path.join(out, "thin_1x3000.png"), optimize=True)
    Image.new("RGB", (13000, 13000)).save(os.path.join(out, "zeros_13000.png"), optimize=True)
    with open(os.path.join(out, "scans_1000.jpg"), "wb") as f:
        f.write(progressive_with_scans(1000))
    print("attacks:", sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
