#!/usr/bin/env python3
"""Writes the small dataset slices that optimist-workloads' tests read.

    python3 tools/make_test_slices.py --data-dir ../shared/data

reads the full MNIST and Fashion-MNIST files (checked against their
SHA-256) and writes, under crates/optimist-workloads/tests/fixtures/data/,
files with the same names and formats holding a slice:

* training file: the first TRAIN images of the training part followed by
  the first VALID images of the validation part (official training images
  50,000 onwards, where optimist's validation split starts);
* test file: the first TEST images of the t10k part.

Gzip streams are written with mtime 0 and no file name, so the output is
reproducible byte for byte. It prints each file's SHA-256 and size for the
table in `src/data.rs` (`SLICES`) and the fixture README.
"""

import argparse
import gzip
import hashlib
import os
import struct
import sys

FULL = {
    "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "fashion-mnist/train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
TRAIN_SPLIT = 50_000  # optimist-workloads' image::TRAIN_SPLIT
SIZES = {"mnist": (800, 200, 200), "fashion-mnist": (320, 80, 80)}


def read_idx(path, sha):
    raw = open(path, "rb").read()
    got = hashlib.sha256(raw).hexdigest()
    if got != sha:
        sys.exit(f"{path}: SHA-256 {got}, expected {sha}")
    data = gzip.decompress(raw)
    magic, n = struct.unpack(">II", data[:8])
    header = 16 if magic == 2051 else 8
    item = 1 if magic == 2049 else 28 * 28
    return data[:header], data[header:], n, item


def write_idx(path, header, items, n):
    header = header[:4] + struct.pack(">I", n) + header[8:]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(gzip.compress(header + items, compresslevel=9, mtime=0))
    raw = open(path, "rb").read()
    return hashlib.sha256(raw).hexdigest(), len(raw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="directory with the full datasets")
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "..", "crates", "optimist-workloads", "tests", "fixtures", "data"),
        help="output directory (default: the workloads crate's test fixtures)",
    )
    args = ap.parse_args()
    for rel, sha in FULL.items():
        header, body, n, item = read_idx(os.path.join(args.data_dir, rel), sha)
        train, valid, test = SIZES[rel.split("/")[0]]
        if "/train-" in rel:
            items = body[: train * item] + body[TRAIN_SPLIT * item : (TRAIN_SPLIT + valid) * item]
            count, split = train + valid, train
        else:
            items = body[: test * item]
            count, split = test, None
        digest, size = write_idx(os.path.join(args.out, rel), header, items, count)
        print(f"{rel}\t{digest}\t{size}\t{count} items\ttrain_split={split}")


if __name__ == "__main__":
    main()
