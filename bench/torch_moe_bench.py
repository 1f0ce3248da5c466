#!/usr/bin/python3
"""The PyTorch peer: the same MoE language model as switchyard's SMALL config, written for speed,
timing whole training steps (forward + backward + AdamW) on random tokens.

    /usr/bin/python3 bench/torch_moe_bench.py --threads 2 --steps 10 --warmup 3 [--config small]

Run it through bench/run_torch_peer.sh for the best environment (one OpenMP pool with OpenBLAS's
own AVX-512 kernels, tcmalloc). Prints one JSON line on stdout:
    {"tokens_per_s": ..., "step_ms_median": ..., "threads": ..., "torch": ..., "blas": ...}
progress goes to stderr.

What it does, per MoE layer: router logits → softmax → top-K → renormalised gates; the N·K token
slots are sorted by expert, the tokens gathered once (index_select), one matmul per expert on its
contiguous block with fused gate+up weights [E, 2F, D], then the gated outputs are scattered back
with index_add_. Attention uses fused qkv, rotate-half RoPE and a plain causal matmul-softmax
(torch 1.13 has no scaled_dot_product_attention; it is used when present). Loss = cross-entropy +
α·LBL (micro-batch) per layer, as in docs/model.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = {
    # vocab, d, layers, heads, experts, top-k, expert hidden, seq, micro-batch, LBL α
    "small": dict(vocab=8192, d=256, layers=4, heads=4, experts=16, top_k=4, d_ff=256, seq=256, batch=8,
                  lbl=0.01),
    # configs/medium.toml
    "medium": dict(vocab=8192, d=512, layers=8, heads=8, experts=64, top_k=6, d_ff=256, seq=256, batch=8,
                   lbl=0.01),
    # a quick one for smoke tests
    "tiny": dict(vocab=512, d=64, layers=2, heads=2, experts=8, top_k=2, d_ff=64, seq=64, batch=2, lbl=0.01),
}


class MoELM(torch.nn.Module):
    def __init__(self, c: dict, init_std: float = 0.02):
        super().__init__()
        self.c = c
        V, D, L, E, Fh = c["vocab"], c["d"], c["layers"], c["experts"], c["d_ff"]
        res_std = init_std / math.sqrt(2 * L)

        def p(*shape, std=init_std):
            return torch.nn.Parameter(torch.randn(*shape) * std)

        self.embed = p(V, D)
        self.ln1 = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(D)) for _ in range(L)])
        self.ln2 = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(D)) for _ in range(L)])
        self.wqkv = torch.nn.ParameterList([p(3 * D, D) for _ in range(L)])
        self.wo = torch.nn.ParameterList([p(D, D, std=res_std) for _ in range(L)])
        self.router = torch.nn.ParameterList([p(E, D) for _ in range(L)])
        self.w_gate_up = torch.nn.ParameterList([p(E, 2 * Fh, D) for _ in range(L)])   # [gate; up]
        self.w_down = torch.nn.ParameterList([p(E, D, Fh, std=res_std) for _ in range(L)])
        self.norm = torch.nn.Parameter(torch.ones(D))
        self.lm_head = p(V, D)

        S, hd = c["seq"], D // c["heads"]
        inv = 10000.0 ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
        ang = torch.arange(S, dtype=torch.float64)[:, None] * inv[None]
        self.register_buffer("cos", torch.cos(ang).float()[None, None], persistent=False)   # [1, 1, S, hd/2]
        self.register_buffer("sin", torch.sin(ang).float()[None, None], persistent=False)
        self.register_buffer("mask", torch.full((S, S), float("-inf")).triu(1), persistent=False)
        self.has_sdpa = hasattr(F, "scaled_dot_product_attention")

    @staticmethod
    def rmsnorm(x, w, eps=1e-6):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(self, x):  # x [B, H, S, hd]
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * self.cos - x2 * self.sin, x2 * self.cos + x1 * self.sin], dim=-1)

    def attention(self, l, h, B, S):
        D, H = self.c["d"], self.c["heads"]
        hd = D // H
        qkv = (h @ self.wqkv[l].t()).view(B, S, 3, H, hd).permute(2, 0, 3, 1, 4)   # [3, B, H, S, hd]
        q, k, v = self.rope(qkv[0]), self.rope(qkv[1]), qkv[2]
        if self.has_sdpa:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = torch.baddbmm(self.mask.expand(B * H, S, S), q.reshape(B * H, S, hd),
                                k.reshape(B * H, S, hd).transpose(1, 2), alpha=1.0 / math.sqrt(hd))
            a = torch.bmm(att.softmax(-1), v.reshape(B * H, S, hd)).view(B, H, S, hd)
        return a.transpose(1, 2).reshape(B * S, D) @ self.wo[l].t()

    def moe(self, l, h):
        N = h.shape[0]
        E, K, Fh = self.c["experts"], self.c["top_k"], self.c["d_ff"]
        probs = (h @ self.router[l].t()).softmax(-1)                       # [N, E]
        top_p, top_e = probs.topk(K, dim=-1)
        gates = top_p / top_p.sum(-1, keepdim=True)                        # renorm
        flat_e = top_e.reshape(-1)
        order = flat_e.argsort()
        counts = torch.bincount(flat_e, minlength=E)
        tok = order // K                                                   # token of each sorted slot
        xs = h.index_select(0, tok)                                        # [N·K, D], grouped by expert
        # unbind / split once: indexing or slicing per expert would make autograd build and sum E
        # full-size gradients (E² work); unbind's and split's backward assemble the E pieces once.
        w_gu, w_dn = self.w_gate_up[l].unbind(0), self.w_down[l].unbind(0)
        sizes = counts.tolist()
        outs = []
        for e, xe in enumerate(xs.split(sizes)):
            if sizes[e] == 0:
                continue
            g, u = (xe @ w_gu[e].t()).chunk(2, dim=-1)                    # [n, F] each
            outs.append((F.silu(g) * u) @ w_dn[e].t())
        ys = torch.cat(outs) * gates.reshape(-1).index_select(0, order)[:, None]
        y = torch.zeros_like(h).index_add_(0, tok, ys.to(h.dtype))  # (bf16 under autocast)
        # LBL at micro-batch scope: α·E·Σ f_i·P_i, f detached.
        f = counts.to(h.dtype) / (N * K)
        lbl = self.c["lbl"] * E * (f * probs.mean(0)).sum()
        return y, lbl

    def forward(self, tokens, targets):
        B, S = tokens.shape
        x = self.embed[tokens.reshape(-1)]
        aux = x.new_zeros(())
        for l in range(self.c["layers"]):
            x = x + self.attention(l, self.rmsnorm(x, self.ln1[l]), B, S)
            y, lbl = self.moe(l, self.rmsnorm(x, self.ln2[l]))
            x = x + y
            aux = aux + lbl
        logits = self.rmsnorm(x, self.norm) @ self.lm_head.t()
        return F.cross_entropy(logits, targets.reshape(-1)) + aux


def blas_info() -> str:
    """Which BLAS library the process actually loaded, and (for OpenBLAS) its kernel and threading."""
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if ("blas" in base or "mkl" in base or "dnnl" in base) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    desc = {}
    for path in libs:
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
        except OSError:
            continue
        if hasattr(lib, "openblas_get_corename"):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            key = f"{lib.openblas_get_config().decode()} core={lib.openblas_get_corename().decode()}"
            desc.setdefault(key, []).append(path)
    desc = [f"{k} ({', '.join(v)})" for k, v in desc.items()]
    return "; ".join(desc) if desc else ", ".join(libs) or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-foreach", action="store_true", help="AdamW's per-tensor loop instead of foreach")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="forward under torch.autocast('cpu', bfloat16): PyTorch's bf16 mixed precision")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    c = CONFIGS[args.config]
    model = MoELM(c)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8, foreach=not args.no_foreach)
    B, S, V = c["batch"], c["seq"], c["vocab"]
    gen = torch.Generator().manual_seed(args.seed + 1)

    times = []
    losses = []
    for step in range(args.warmup + args.steps):
        tokens = torch.randint(0, V, (B, S + 1), generator=gen)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast_bf16):
            loss = model(tokens[:, :-1], tokens[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if step >= args.warmup:
            times.append(dt)
        print(f"step {step}{' (warmup)' if step < args.warmup else ''}: {1000 * dt:.1f} ms, loss {float(loss):.4f}",
              file=sys.stderr, flush=True)

    med = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    D, L, E, K, Fh = c["d"], c["layers"], c["experts"], c["top_k"], c["d_ff"]
    n_active = L * (4 * D * D + D * E + 3 * K * D * Fh) + V * D          # PERF-NOTES.md's count
    flop_per_token = 6 * n_active + 12 * L * D * S
    result = {
        "tokens_per_s": round(B * S / med, 1),
        "step_ms_median": round(1000 * med, 2),
        "step_ms_min": round(1000 * min(times), 2),
        "tokens_per_s_mean": round(B * S * len(times) / sum(times), 1),
        "model_gflop_per_s": round(flop_per_token * B * S / med / 1e9, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "blas": blas_info(),
        "config": args.config, "tokens_per_step": B * S, "steps": args.steps, "warmup": args.warmup,
        "params": n_params, "optimizer": f"AdamW(foreach={not args.no_foreach})",
        "attention": "sdpa" if model.has_sdpa else "matmul-softmax",
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                "LD_LIBRARY_PATH", "LD_PRELOAD")},
        "final_loss": round(losses[-1], 4),
        "precision": "bf16-autocast" if args.autocast_bf16 else "fp32",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
