#!/usr/bin/python3
"""An independent reader/writer of Megatron-LM's indexed dataset format (MMIDIDX), numpy only,
and a cross-check of switchyard's C++ implementation against it.

Usage: megatron_idx.py <path to sy_indexed_dataset_xcheck> <work dir>

Layout (megatron/core/datasets/indexed_dataset.py, _IndexWriter / _IndexReader), little-endian:
  .idx: b"MMIDIDX\\x00\\x00", u64 version 1, u8 dtype code, u64 sequence count n,
        u64 document-index count m (documents + 1, the leading 0 included),
        int32[n] sequence lengths, int64[n] byte pointers into .bin, int64[m] document indices
  .bin: the sequences' tokens back to back in the dtype.

1. For uint16 and int32: we write the reference dataset; the C++ tool reads and checks it.
2. The C++ tool writes it; we read and check it, and its files must equal ours byte for byte.
3. A .bin truncated by us must make the C++ tool fail with a message naming the file.
Exit code 0 iff every check passes.
"""
import os
import struct
import subprocess
import sys

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
         7: np.float32, 8: np.uint16}
CODE_OF = {np.dtype(v): k for k, v in CODES.items()}


def reference(wide):
    """Documents as lists of sequences; the same formula as indexed_dataset_xcheck.cc."""
    docs = []
    for d in range(5):
        doc = []
        for s in range(1 + d % 3):
            n = (3 * d + 5 * s) % 8
            doc.append([(1009 * d + 101 * s + 13 * t) * (100003 if wide else 1) for t in range(n)])
        docs.append(doc)
    return docs


def write_dataset(prefix, docs, dtype):
    dtype = np.dtype(dtype)
    lengths, doc_index, pointers, offset = [], [0], [], 0
    with open(prefix + ".bin", "wb") as f:
        for doc in docs:
            for seq in doc:
                arr = np.asarray(seq, dtype=dtype.newbyteorder("<"))
                f.write(arr.tobytes())
                pointers.append(offset)
                offset += arr.nbytes
                lengths.append(len(seq))
            doc_index.append(len(lengths))
    with open(prefix + ".idx", "wb") as f:
        f.write(HEADER)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", CODE_OF[dtype]))
        f.write(struct.pack("<Q", len(lengths)))
        f.write(struct.pack("<Q", len(doc_index)))
        f.write(np.asarray(lengths, dtype="<i4").tobytes())
        f.write(np.asarray(pointers, dtype="<i8").tobytes())
        f.write(np.asarray(doc_index, dtype="<i8").tobytes())


def read_dataset(prefix):
    """Returns (dtype, documents) after checking the layout strictly."""
    raw = open(prefix + ".idx", "rb").read()
    assert raw[:9] == HEADER, "bad magic"
    version, code, n, m = struct.unpack_from("<QBQQ", raw, 9)
    assert version == 1, f"version {version}"
    dtype = np.dtype(CODES[code]).newbyteorder("<")
    off = 34
    lengths = np.frombuffer(raw, dtype="<i4", count=n, offset=off)
    pointers = np.frombuffer(raw, dtype="<i8", count=n, offset=off + 4 * n)
    doc_index = np.frombuffer(raw, dtype="<i8", count=m, offset=off + 12 * n)
    assert len(raw) == off + 12 * n + 8 * m, "idx size"
    assert doc_index[0] == 0 and doc_index[-1] == n and np.all(np.diff(doc_index) >= 0)
    bin_ = np.memmap(prefix + ".bin", mode="r", dtype=np.uint8) if n and lengths.sum() else b""
    expected_ptr = np.concatenate([[0], np.cumsum(lengths.astype(np.int64) * dtype.itemsize)])
    assert np.array_equal(pointers, expected_ptr[:-1]), "pointers"
    assert os.path.getsize(prefix + ".bin") == expected_ptr[-1], "bin size"
    seqs = [np.frombuffer(bin_, dtype=dtype, count=int(l), offset=int(p)).tolist()
            for l, p in zip(lengths, pointers)]
    docs = [seqs[doc_index[d]:doc_index[d + 1]] for d in range(m - 1)]
    return dtype, docs


def main():
    tool, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    failures = 0

    def check(cond, what):
        nonlocal failures
        if not cond:
            failures += 1
            print("FAIL:", what, file=sys.stderr)

    for name, dtype in (("uint16", np.uint16), ("int32", np.int32)):
        wide = name == "int32"
        ref = reference(wide)
        py = os.path.join(work, "py_" + name)
        write_dataset(py, ref, dtype)
        r = subprocess.run([tool, "check", py, name], capture_output=True, text=True)
        check(r.returncode == 0, f"C++ reads the numpy-written {name} dataset: {r.stderr.strip()}")

        cc = os.path.join(work, "cc_" + name)
        r = subprocess.run([tool, "write", cc, name], capture_output=True, text=True)
        check(r.returncode == 0, f"C++ writes {name}: {r.stderr.strip()}")
        if r.returncode != 0:
            continue
        got_dtype, docs = read_dataset(cc)
        check(got_dtype == np.dtype(dtype).newbyteorder("<"), f"{name}: dtype {got_dtype}")
        check(docs == ref, f"{name}: numpy reads the C++-written documents")
        for ext in (".idx", ".bin"):
            check(open(cc + ext, "rb").read() == open(py + ext, "rb").read(),
                  f"{name}: C++ {ext} equals the numpy {ext} byte for byte")

    bad = os.path.join(work, "py_uint16")
    with open(bad + ".bin", "r+b") as f:
        f.truncate(os.path.getsize(bad + ".bin") - 2)
    r = subprocess.run([tool, "check", bad, "uint16"], capture_output=True, text=True)
    check(r.returncode != 0 and "py_uint16.bin" in r.stderr,
          f"truncated .bin must fail naming the file, got rc {r.returncode}: {r.stderr.strip()}")

    print("megatron_idx: %s" % ("ok" if failures == 0 else f"{failures} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
