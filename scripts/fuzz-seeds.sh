#!/usr/bin/env bash
# Regenerates the fuzzers' seed corpora, fuzz/corpus/<target>/, from real files: a checkpoint
# and a Megatron dataset written by the Release build's switchyard, the shipped configs and
# experiment files, and files written by the independent Python writers in tests/python/.
# The output is committed (a few KB per target); run this again when a format changes.
# Usage: scripts/fuzz-seeds.sh [BUILD_DIR]   (default build; needs BUILD_DIR/switchyard)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
SRC=$PWD
SY="$SRC/$BUILD/switchyard"
[ -x "$SY" ] || { echo "fuzz-seeds: $SY missing; run make build first" >&2; exit 1; }
OUT="$SRC/fuzz/corpus"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for t in safetensors manifest trainer_state metrics_log indexed_dataset token_file run_config \
         set_override experiment; do
  rm -rf "${OUT:?}/$t"
  mkdir -p "$OUT/$t"
done

# A two-step run of a toy model with a dense layer, an MoE layer and the loss-free balancer (so
# the checkpoint holds balancer.safetensors too).
"$SY" train -c configs/tiny.toml --set out_dir="$WORK/run" --set model.vocab_size=32 \
  --set model.d_model=8 --set model.n_heads=2 --set model.n_layers=2 --set model.n_dense_layers=1 \
  --set model.d_dense=8 --set model.d_expert=8 --set model.seq_len=8 --set loss_free.update=sign \
  --set train.steps=2 --set train.warmup_steps=0 --set train.eval_every=0 \
  --set train.eval_batches=1 --quiet
ckpt="$WORK/run/checkpoints/$(cat "$WORK/run/checkpoints/latest")"
cp "$ckpt/model.safetensors" "$OUT/safetensors/checkpoint-model.safetensors"
cp "$ckpt/balancer.safetensors" "$OUT/safetensors/checkpoint-balancer.safetensors"
cp "$ckpt/manifest.json" "$OUT/manifest/checkpoint-manifest.json"
cp "$ckpt/trainer_state.json" "$OUT/trainer_state/checkpoint-trainer_state.json"
cp "$ckpt/config.toml" "$OUT/run_config/checkpoint-config.toml"
cp "$WORK/run/metrics.jsonl" "$OUT/metrics_log/tiny-run.jsonl"
head -c -40 "$WORK/run/metrics.jsonl" >"$OUT/metrics_log/torn-last-line.jsonl"

# A Megatron dataset of the repository's test texts (one document per file), with its tokenizer.
"$SY" data tokenize --input src/data/testdata --domain test --output "$WORK/test" \
  --train-tokenizer --vocab-size 600 --quiet >/dev/null

cp configs/*.toml tests/configs/parity.toml "$OUT/run_config/"
cp configs/experiments/*.toml "$OUT/experiment/"

PYTHONPATH="$SRC/tests/python" /usr/bin/python3 - "$OUT" "$WORK" <<'EOF'
import glob, hashlib, json, os, struct, sys
import numpy as np
import megatron_idx, sy_safetensors

out, work = sys.argv[1], sys.argv[2]

def put(target, name, data):
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)

# safetensors from the independent Python writer, and headers it cannot write: every dtype the
# reader accepts, a 0-d tensor, empty tensors, metadata.
p = os.path.join(work, "py.safetensors")
sy_safetensors.save(p, {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                        "ids": np.array([1, 2, 3], dtype=np.int64), "mask": np.zeros(4, np.uint8)},
                    {"format": "pt", "note": "python"})
put("safetensors", "python-writer.safetensors", open(p, "rb").read())

def raw(tensors, metadata=None):
    header, blobs, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        blobs += bytes(range(nbytes % 256)) + b"\x01" * (nbytes - nbytes % 256)
        off += nbytes
    h = json.dumps(header).encode()
    h += b" " * ((-(8 + len(h))) % 8)
    return struct.pack("<Q", len(h)) + h + blobs

put("safetensors", "all-dtypes.safetensors", raw(
    [("f16", "F16", [2], 4), ("bf16", "BF16", [2], 4), ("i8", "I8", [3], 3), ("i16", "I16", [1], 2),
     ("u16", "U16", [2], 4), ("u32", "U32", [1], 4), ("u64", "U64", [1], 8), ("b", "BOOL", [2], 2),
     ("f64", "F64", [1], 8), ("i32", "I32", [1], 4)]))
put("safetensors", "scalar-and-empty.safetensors", raw(
    [("scalar", "F32", [], 4), ("empty", "F32", [0, 5], 0), ("e2", "I64", [3, 0], 0)], {}))
put("safetensors", "header-only.safetensors", raw([]))

# Manifests of the files manifest_fuzz puts beside its input (fuzz/manifest_fuzz.cc).
fixed = {"config.toml": b'out_dir = "runs/fuzz"\n', "trainer_state.json": b"{}\n"}
def manifest(files):
    return json.dumps({"format": "switchyard-checkpoint", "version": 1, "files": {
        n: {"bytes": len(fixed[n]), "sha256": hashlib.sha256(fixed[n]).hexdigest()}
        for n in files}}, indent=2).encode() + b"\n"
put("manifest", "verifies.json", manifest(fixed))
put("manifest", "verifies-one.json", manifest(["config.toml"]))
put("manifest", "empty-files.json",
    b'{"format": "switchyard-checkpoint", "version": 1, "files": {}}\n')

put("trainer_state", "weights-only.json",
    b'{"step": 0, "data_position": 0, "tokens_seen": 0, "optimizer_steps": 0}')
put("trainer_state", "large.json", json.dumps({"step": 2**40, "data_position": 2**63,
    "tokens_seen": 2**50, "optimizer_steps": 2**40}).encode())

# Indexed datasets, packed for indexed_dataset_fuzz: u32 len(.idx), .idx, .bin.
def pack(prefix):
    idx, bin_ = open(prefix + ".idx", "rb").read(), open(prefix + ".bin", "rb").read()
    return struct.pack("<I", len(idx)) + idx + bin_
put("indexed_dataset", "switchyard-tokenize", pack(os.path.join(work, "test")))
for wide, dtypes in ((False, [np.uint8, np.int8, np.int16, np.uint16]), (True, [np.int32, np.int64])):
    docs = megatron_idx.reference(wide)
    for dt in dtypes:
        d = [[[t % 128 if dt in (np.uint8, np.int8) else t % 30000 if dt == np.int16 else t
               for t in seq] for seq in doc] for doc in docs]
        prefix = os.path.join(work, "ref_" + np.dtype(dt).name)
        megatron_idx.write_dataset(prefix, d, dt)
        put("indexed_dataset", "python-writer-" + np.dtype(dt).name, pack(prefix))
megatron_idx.write_dataset(os.path.join(work, "empty"), [[]], np.uint16)
put("indexed_dataset", "python-writer-empty-document", pack(os.path.join(work, "empty")))

# Token files: the dataset's real token ids as int32, the first byte picking seq_len (see
# fuzz/token_file_fuzz.cc), and a short one.
tokens = np.fromfile(os.path.join(work, "test.bin"), dtype=np.uint16).astype("<i4")
put("token_file", "tokenized-text", tokens[:256].tobytes())
put("token_file", "short", np.array([3, 1, 2, 0], dtype="<i4").tobytes())
put("token_file", "arange", np.arange(40, dtype="<i4").tobytes())

# --set overrides: each shipped experiment's runs as the lines switchyard passes.
import tomllib
for path in sorted(glob.glob("configs/experiments/*.toml")):
    x = tomllib.load(open(path, "rb"))
    for r in x["runs"]:
        lines = x.get("set", []) + r.get("set", []) + ['out_dir="%s/%s"' % (x["out_dir"], r["name"])]
        name = "%s-%s" % (os.path.basename(path)[:-5], r["name"])
        put("set_override", name, "\n".join(lines).encode())
put("set_override", "cli", b"out_dir=runs/2024\nmodel.top_k=1\nrouter.gate=raw\n"
    b"balance.terms.1={type=\"lbl\", scope=\"global\", coef=0.001}\nbalance.terms.0.coef=0\n"
    b"data.source=blend\ndata.blend=0.5 data/a_train 0.3 data/b_train 0.2 data/c\n")
EOF
du -sh "$OUT"/* | sed 's|'"$SRC"'/||'
