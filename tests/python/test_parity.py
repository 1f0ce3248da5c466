#!/usr/bin/python3
"""Parity test: the C++ engine's forward/backward against the float64 PyTorch reference.

    /usr/bin/python3 tests/python/test_parity.py DUMP_DIR [--rtol 1e-4] [--routing-tol 0.005] [--quiet]

DUMP_DIR (written by the C++ side) holds
  checkpoint/model.safetensors, checkpoint/config.json   the model (docs/model.md names, [out, in])
  batch.safetensors     tokens I32 [B, S+1]; inputs = tokens[:, :-1], targets = tokens[:, 1:]
  expected.safetensors  F32 logits [B*S, V], loss, ce, lbl, z_loss (scalars), grad.<name> for every
                        parameter; optionally topk.<l> I32 [N, K] and kept.<l> U8 [N, K] per MoE layer.

Each tensor is compared by rel err = max|cpp − ref| / max(max|ref|, 1e-6). Routing is compared
exactly. Float32 (C++) against float64 (reference) may legitimately flip near-ties: up to
--routing-tol (fraction of tokens) per layer is tolerated, and then the tensors are compared with the
reference made to follow the C++ selection in the affected layers (its gates still come from its
own scores), so one flipped near-tie does not hide or fake a real difference elsewhere.
Exit 0 iff every tensor is within rtol and routing agrees within tolerance; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy_safetensors  # noqa: E402
from torch_ref import TorchRef  # noqa: E402


def rel_err(cpp: np.ndarray, ref: np.ndarray) -> float:
    a = np.asarray(cpp, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.size == 0:
        return 0.0
    if not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6))


def compare_routing(exp: Dict[str, np.ndarray], out: Dict[str, object], N: int, K: int,
                    tol: float) -> Tuple[Dict[int, int], List[str], bool]:
    """Returns ({layer: tokens that differ}, report lines, ok)."""
    lines: List[str] = []
    differing: Dict[int, int] = {}
    ok = True
    for l in sorted(out["topk"]):
        tk_key, kp_key = f"topk.{l}", f"kept.{l}"
        if tk_key not in exp:
            lines.append(f"  layer {l}: no {tk_key} in the dump (routing not checked)")
            continue
        cpp_tk = exp[tk_key].astype(np.int64)
        ref_tk = out["topk"][l].numpy()
        if cpp_tk.shape != (N, K):
            lines.append(f"  layer {l}: {tk_key} has shape {cpp_tk.shape}, expected {(N, K)}")
            ok = False
            continue
        row_tk = np.any(cpp_tk != ref_tk, axis=1)
        same_set = row_tk & np.all(np.sort(cpp_tk, axis=1) == np.sort(ref_tk, axis=1), axis=1)
        row_kp = np.zeros(N, dtype=bool)
        if kp_key in exp:
            cpp_kp = exp[kp_key].astype(bool)
            if cpp_kp.shape != (N, K):
                lines.append(f"  layer {l}: {kp_key} has shape {cpp_kp.shape}, expected {(N, K)}")
                ok = False
                continue
            row_kp = np.any(cpp_kp != out["kept"][l].numpy(), axis=1)
        rows = row_tk | row_kp
        n = int(rows.sum())
        frac = n / N
        status = "ok" if n == 0 else ("near-tie flips, tolerated" if frac <= tol else "FAIL")
        lines.append(f"  layer {l}: {n}/{N} tokens differ ({100 * frac:.3f}%): "
                     f"{int(row_tk.sum())} in top-K ({int(same_set.sum())} only in slot order), "
                     f"{int(row_kp.sum())} in kept  [{status}]")
        if n:
            differing[l] = n
            first = np.nonzero(rows)[0][:3]
            for t in first:
                lines.append(f"      token {t}: cpp topk {cpp_tk[t].tolist()} kept "
                             f"{exp[kp_key][t].tolist() if kp_key in exp else '-'} | ref topk {ref_tk[t].tolist()} "
                             f"kept {out['kept'][l][t].int().tolist()}")
        if frac > tol:
            ok = False
    return differing, lines, ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump_dir")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--routing-tol", type=float, default=0.005,
                    help="largest tolerated fraction of tokens with different routing per layer (0.005)")
    ap.add_argument("--quiet", action="store_true", help="print only the tensors over rtol and the summary")
    args = ap.parse_args(argv)

    d = args.dump_dir
    ref = TorchRef.from_checkpoint(os.path.join(d, "checkpoint"))
    c = ref.cfg
    tokens = sy_safetensors.load(os.path.join(d, "batch.safetensors"))["tokens"].astype(np.int64)
    exp = sy_safetensors.load(os.path.join(d, "expected.safetensors"))
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        print(f"batch tokens has shape {tokens.shape}, expected [B, S+1]")
        return 1
    if tokens.min() < 0 or tokens.max() >= c.vocab_size:
        print(f"batch tokens out of range [0, {c.vocab_size}): min {tokens.min()} max {tokens.max()}")
        return 1
    B, S = tokens.shape[0], tokens.shape[1] - 1
    N, K = B * S, c.top_k
    if S != c.seq_len:
        print(f"note: batch has S = {S}, config seq_len = {c.seq_len} (the reference uses S = {S})")
    inputs = torch.from_numpy(tokens[:, :-1].copy())
    targets = torch.from_numpy(tokens[:, 1:].copy())

    print(f"config: V={c.vocab_size} D={c.d_model} L={c.n_layers} H={c.n_heads} E={c.n_experts} K={K} "
          f"F={c.d_expert} shared={c.n_shared_experts} dense={c.n_dense_layers} score={c.score} gate={c.gate} "
          f"scale={c.gate_scale} cf={c.capacity_factor} drop={c.drop_policy} lbl={c.lbl_coef} z={c.z_loss_coef}; "
          f"batch B={B} S={S}")

    out, grads = ref.loss_and_grads(inputs, targets)

    # Routing.
    print("routing:")
    differing, lines, routing_ok = compare_routing(exp, out, N, K, args.routing_tol)
    for line in lines:
        print(line)
    forced_layers: List[int] = []
    if differing and routing_ok:
        # Follow the C++ selection in every layer the dump gives it for (a flip in one layer moves
        # the activations of the later ones, so their own routing is taken from the dump too).
        forced = {l: (torch.from_numpy(exp[f"topk.{l}"].astype(np.int64)),
                      torch.from_numpy(exp[f"kept.{l}"].astype(bool)) if f"kept.{l}" in exp
                      else out["kept"][l]) for l in out["topk"] if f"topk.{l}" in exp}
        forced_layers = sorted(differing)
        out, grads = ref.loss_and_grads(inputs, targets, routing=forced)
        print(f"  near-tie flips (float32 vs float64) in layer(s) {forced_layers}: the tensors below are "
              f"compared with the reference following the C++ selection in layer(s) {sorted(forced)}")

    # Tensors.
    pairs: List[Tuple[str, np.ndarray]] = [
        ("logits", out["logits"].detach().numpy()),
        ("loss", out["loss"].detach().numpy()),
        ("ce", out["ce"].detach().numpy()),
        ("lbl", out["lbl"].detach().numpy()),
        ("z_loss", out["z_loss"].detach().numpy()),
    ] + [(f"grad.{n}", g.numpy()) for n, g in grads.items()]

    results: List[Tuple[str, float, str]] = []
    for name, want in pairs:
        if name not in exp:
            results.append((name, float("inf"), "missing from expected.safetensors"))
            continue
        got = exp[name]
        if tuple(got.shape) != tuple(want.shape):
            results.append((name, float("inf"), f"shape {tuple(got.shape)} != reference {tuple(want.shape)}"))
            continue
        results.append((name, rel_err(got, want), ""))
    known = {n for n, _ in pairs}
    extra = [k for k in exp if k not in known and not k.startswith(("topk.", "kept."))]

    width = max(len(n) for n, _, _ in results)
    print(f"\n{'tensor'.ljust(width)}  rel err")
    for name, err, note in results:
        bad = not (err <= args.rtol)
        if args.quiet and not bad:
            continue
        print(f"{name.ljust(width)}  {err:.3e}{'  FAIL' if bad else ''}{'  ' + note if note else ''}")
    for name in ("loss", "ce", "lbl", "z_loss"):
        if name in exp:
            print(f"  {name}: cpp {float(exp[name]):.9g}  ref {float(out[name]):.9g}")
    if extra:
        print(f"note: expected.safetensors has tensors the test does not know: {extra[:10]}")

    failed = [(n, e, note) for n, e, note in results if not (e <= args.rtol)]
    worst = max(results, key=lambda r: r[1])
    print(f"\n{len(results) - len(failed)}/{len(results)} tensors within rtol {args.rtol:g}; "
          f"worst {worst[0]} {worst[1]:.3e}")
    if not routing_ok:
        bad_layers = [l for l, n in differing.items() if n / N > args.routing_tol] or sorted(differing)
        first = min(bad_layers) if bad_layers else 0
        print(f"FAIL: routing differs in more than {100 * args.routing_tol:g}% of tokens in layer(s) {bad_layers} "
              f"(or a routing tensor is malformed). Beyond near-ties this is a real difference; the tensors "
              f"above were compared with the reference's own routing, so those of layer {first} and every "
              f"later layer, the logits, the losses and all gradients may differ because of it.")
    if failed:
        failed.sort(key=lambda r: -r[1])
        print("FAIL: over rtol, worst first: " + ", ".join(
            f"{n} ({e:.3e}{'; ' + note if note else ''})" for n, e, note in failed[:10])
            + (f" ... and {len(failed) - 10} more" if len(failed) > 10 else ""))
    if failed or not routing_ok:
        return 1
    print("PASS" + (f" (routing near-tie flips tolerated in layer(s) {forced_layers})" if forced_layers else ""))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sys.exit(main())
