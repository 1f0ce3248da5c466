#!/usr/bin/python3
"""The routing step alone in PyTorch, the peer of bench/routing_bench.cc: from router logits
z[N,E] (fp32, seeded standard normal) to the selected experts and their gates, written the way a
careful PyTorch user would (vectorised, no Python loops over tokens or experts).

    /usr/bin/python3 bench/torch_routing_bench.py [--threads 2] [--min-time 0.3] [--algos topk,ec]

Run it through scripts/routing_bench.sh, which gives it bench/run_torch_peer.sh's best
environment (no OPENBLAS_CORETYPE, OpenMP OpenBLAS, tcmalloc) and runs the C++ side beside it.

Prints one JSON line per (algorithm, N, E, K) on stdout:
    {"algo": "bip2", "n": 2048, "E": 16, "K": 4, "us": <median µs>, "reps": ..., "torch": ...}

    topk      softmax → topk → renormalised gates
    lossfree  topk of scores + bias; gates gathered from the unbiased scores, renormalised
    ec        Expert Choice: per expert, topk over the token dim (capacity k = ceil(N·K/E))
    bipT      BIP, T = 1, 2, 4 on a warm q: row pass p = (K+1)-th largest of s − q over experts,
              column pass q = max(0, (c+1)-th largest of s − p over tokens), c = ceil(K·N/E);
              then topk of s − q, gates from s, renormalised
    sinkhorn  log-domain Sinkhorn, 8 iterations, topk of z + b, raw gates softmax(z)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch


def topk_route(z, K):
    p = torch.softmax(z, dim=1)
    v, idx = p.topk(K, dim=1)
    return idx, v / v.sum(dim=1, keepdim=True)


def lossfree_route(z, K, bias):
    p = torch.softmax(z, dim=1)
    idx = (p + bias).topk(K, dim=1).indices
    g = p.gather(1, idx)
    return idx, g / g.sum(dim=1, keepdim=True)


def ec_route(z, K):
    n, E = z.shape
    p = torch.softmax(z, dim=1)
    k = min(n, math.ceil(n * K / E))
    v, tok = p.topk(k, dim=0)  # [k, E]: each expert's tokens and gates
    return tok, v


def bip_iterate(s, q, K, c, T):
    for _ in range(T):
        p = (s - q).topk(K + 1, dim=1).values[:, K]                     # row pass  [N]
        q = (s - p[:, None]).topk(c + 1, dim=0).values[c].clamp_(min=0)  # column pass [E]
    return q


def bip_route(z, K, q, T):
    n, E = z.shape
    s = torch.softmax(z, dim=1)
    c = math.ceil(K * n / E)
    q = bip_iterate(s, q, K, c, T)
    idx = (s - q).topk(K, dim=1).indices
    g = s.gather(1, idx)
    return idx, g / g.sum(dim=1, keepdim=True), q


def sinkhorn_route(z, K, iterations=8):
    n, E = z.shape
    log_col_mass = math.log(n / E)
    b = torch.zeros(E, dtype=z.dtype)
    for _ in range(iterations):
        a = -torch.logsumexp(z + b, dim=1)
        b = log_col_mass - torch.logsumexp(z + a[:, None], dim=0)
    idx = (z + b).topk(K, dim=1).indices
    return idx, torch.softmax(z, dim=1).gather(1, idx)


ALGOS = ("topk", "lossfree", "ec", "bip1", "bip2", "bip4", "sinkhorn")


def median_us(fn, min_time, warmup=5, min_reps=15):
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6, len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per case (at least)")
    ap.add_argument("--algos", default=",".join(ALGOS),
                    help="comma-separated subset of: " + ", ".join(ALGOS) + " (default: all)")
    args = ap.parse_args()
    algos = [a for a in args.algos.split(",") if a]
    unknown = [a for a in algos if a not in ALGOS]
    if unknown:
        ap.error("unknown --algos %s; allowed: %s" % (", ".join(unknown), ", ".join(ALGOS)))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        for n in (2048, 8192):
            for E in (16, 64):
                g = torch.Generator().manual_seed(1234 + n * 131 + E)
                z = torch.randn(n, E, generator=g)
                bias = (torch.rand(E, generator=g) - 0.5) * 0.1
                for K in (4, 6):
                    cases = [("topk", lambda: topk_route(z, K)),
                             ("lossfree", lambda: lossfree_route(z, K, bias)),
                             ("ec", lambda: ec_route(z, K))]
                    for T in (1, 2, 4):
                        if "bip%d" % T not in algos:
                            continue
                        # Warm q: the prices after a few steps, as in training.
                        q = torch.zeros(E)
                        for _ in range(8):
                            q = bip_route(z, K, q, T)[2]
                        cases.append(("bip%d" % T, lambda q=q, T=T: bip_route(z, K, q, T)))
                    cases.append(("sinkhorn", lambda: sinkhorn_route(z, K)))
                    for algo, fn in cases:
                        if algo not in algos:
                            continue
                        us, reps = median_us(fn, args.min_time)
                        print(json.dumps({"algo": algo, "n": n, "E": E, "K": K, "us": round(us, 2),
                                          "reps": reps, "threads": torch.get_num_threads(),
                                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
