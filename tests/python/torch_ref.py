"""PyTorch reference of the model in docs/model.md (the contract the C++ engine implements).

Written for clarity, not speed: float64 by default, loops over experts, no fusion. Every formula
follows docs/model.md line by line; the names of the parameters are the checkpoint's (Hugging Face
Qwen3-MoE layout, [out, in]).

    ref = TorchRef.from_checkpoint("run/checkpoint")          # model.safetensors + config.json
    out = ref.forward(inputs, targets)                        # inputs/targets: int64 [B, S]
    out["loss"].backward()                                    # grads in ref.params[name].grad

`forward` returns a dict: logits [N, V], loss, ce, lbl (Σ_l α·LBL_l), z_loss (Σ_l coef·z_l) and,
per MoE layer l, topk[l] (int64 [N, K], selected experts in slot order), kept[l] (bool [N, K]).
`forward(..., routing={l: (topk, kept)})` imposes a given selection in layer l (gates are still
computed, differentiably, from this model's own scores): used by the parity test when float32 vs
float64 flips a near-tie.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy_safetensors  # noqa: E402


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

@dataclass
class RefConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    seq_len: int
    n_experts: int
    top_k: int
    d_expert: int
    n_shared_experts: int = 0
    d_shared: int = 0            # 0 = d_expert
    n_dense_layers: int = 0
    d_dense: int = 0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    score: str = "softmax"       # softmax | sigmoid
    gate: str = "renorm"         # renorm | raw
    gate_scale: float = 1.0
    capacity_factor: float = 0.0
    drop_policy: str = "probs"   # probs | position
    z_loss_coef: float = 0.0
    lbl_coef: float = 0.0        # Σ coef of balance terms with type "lbl", scope "micro"
    bf16_gemms: bool = False     # system.precision = "bf16": the weight GEMMs and the attention
                                 # core's products on bf16 operands

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def shared_dim(self) -> int:
        return self.d_shared if self.d_shared > 0 else self.d_expert

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"config: {msg}")
        need(self.d_model % self.n_heads == 0, f"d_model {self.d_model} not divisible by n_heads {self.n_heads}")
        need(self.head_dim % 2 == 0, f"head dim {self.head_dim} must be even for RoPE")
        need(1 <= self.top_k <= self.n_experts, f"top_k {self.top_k} must be in [1, n_experts={self.n_experts}]")
        need(0 <= self.n_dense_layers <= self.n_layers, f"n_dense_layers {self.n_dense_layers} out of range")
        need(self.n_dense_layers == 0 or self.d_dense > 0, "d_dense must be > 0 when n_dense_layers > 0")
        need(self.score in ("softmax", "sigmoid"), f"router.score {self.score!r} not softmax|sigmoid")
        need(self.gate in ("renorm", "raw"), f"router.gate {self.gate!r} not renorm|raw")
        need(self.drop_policy in ("probs", "position"), f"router.drop_policy {self.drop_policy!r} not probs|position")
        need(self.gate_scale > 0, f"router.gate_scale {self.gate_scale} must be > 0")
        need(self.capacity_factor >= 0, f"router.capacity_factor {self.capacity_factor} must be >= 0")
        need(not (self.top_k == 1 and self.gate == "renorm"),
             "top_k = 1 with renorm gates gives a constant gate and no router gradient (refused)")


def config_from_json(cfg: Mapping) -> RefConfig:
    """Builds a RefConfig from a checkpoint's config.json (its "switchyard" object)."""
    if "switchyard" not in cfg:
        raise ValueError("config.json has no \"switchyard\" object with the run configuration")
    sy = cfg["switchyard"]
    m = sy["model"]
    r = sy.get("router", {})
    if r.get("type", "topk") != "topk":
        raise ValueError(f"router.type {r.get('type')!r}: the reference implements only 'topk'")
    lbl = 0.0
    for term in sy.get("balance", {}).get("terms", []):
        if term.get("type") == "lbl" and term.get("scope") == "micro":
            lbl += float(term.get("coef", 0.0))
        elif float(term.get("coef", 0.0)) != 0.0:
            raise ValueError(f"balance term {term} is not implemented by the reference (only lbl/micro)")
    rc = RefConfig(
        vocab_size=int(m["vocab_size"]), d_model=int(m["d_model"]), n_layers=int(m["n_layers"]),
        n_heads=int(m["n_heads"]), seq_len=int(m["seq_len"]), n_experts=int(m["n_experts"]),
        top_k=int(m["top_k"]), d_expert=int(m["d_expert"]),
        n_shared_experts=int(m.get("n_shared_experts", 0)), d_shared=int(m.get("d_shared", 0)),
        n_dense_layers=int(m.get("n_dense_layers", 0)), d_dense=int(m.get("d_dense", 0)),
        rope_theta=float(m.get("rope_theta", 10000.0)), norm_eps=float(m.get("norm_eps", 1e-6)),
        score=str(r.get("score", "softmax")), gate=str(r.get("gate", "renorm")),
        gate_scale=float(r.get("gate_scale", 1.0)), capacity_factor=float(r.get("capacity_factor", 0.0)),
        drop_policy=str(r.get("drop_policy", "probs")), z_loss_coef=float(r.get("z_loss_coef", 0.0)),
        lbl_coef=lbl, bf16_gemms=cfg.get("switchyard_precision", "fp32") == "bf16")
    rc.validate()
    return rc


def expected_shapes(c: RefConfig) -> Dict[str, Tuple[int, ...]]:
    """Every parameter name of docs/model.md with its shape."""
    D, V, E, F, Fs = c.d_model, c.vocab_size, c.n_experts, c.d_expert, c.shared_dim
    s: Dict[str, Tuple[int, ...]] = {"model.embed_tokens.weight": (V, D)}
    for l in range(c.n_layers):
        p = f"model.layers.{l}."
        s[p + "input_layernorm.weight"] = (D,)
        for n in "qkvo":
            s[p + f"self_attn.{n}_proj.weight"] = (D, D)
        s[p + "post_attention_layernorm.weight"] = (D,)
        if l < c.n_dense_layers:
            s[p + "mlp.gate_proj.weight"] = (c.d_dense, D)
            s[p + "mlp.up_proj.weight"] = (c.d_dense, D)
            s[p + "mlp.down_proj.weight"] = (D, c.d_dense)
        else:
            s[p + "mlp.gate.weight"] = (E, D)
            for e in range(E):
                s[p + f"mlp.experts.{e}.gate_proj.weight"] = (F, D)
                s[p + f"mlp.experts.{e}.up_proj.weight"] = (F, D)
                s[p + f"mlp.experts.{e}.down_proj.weight"] = (D, F)
            for j in range(c.n_shared_experts):
                s[p + f"mlp.shared_experts.{j}.gate_proj.weight"] = (Fs, D)
                s[p + f"mlp.shared_experts.{j}.up_proj.weight"] = (Fs, D)
                s[p + f"mlp.shared_experts.{j}.down_proj.weight"] = (D, Fs)
    s["model.norm.weight"] = (D,)
    s["lm_head.weight"] = (V, D)
    return s


# ----------------------------------------------------------------------------------------------
# The pieces (free functions, so the self-test can check each on its own)
# ----------------------------------------------------------------------------------------------

def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE on x [B, S, H, hd]; position = index along S."""
    S, hd = x.shape[1], x.shape[3]
    half = hd // 2
    i = torch.arange(half, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / hd)                                   # [hd/2]
    ang = torch.arange(S, dtype=torch.float64)[:, None] * inv_freq[None]  # [S, hd/2]
    cos = torch.cos(ang).to(x.dtype)[None, :, None, :]
    sin = torch.sin(ang).to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q, k, v [B, S, H, hd] -> [B, S, H*hd]; softmax(q·kᵀ/√hd + causal mask)·v."""
    B, S, H, hd = q.shape
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))                  # [B, H, S, hd]
    att = qh @ kh.transpose(-1, -2) / math.sqrt(hd)
    mask = torch.ones(S, S, dtype=torch.bool).triu(1)
    att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
    return (att @ vh).transpose(1, 2).reshape(B, S, H * hd)


class Bf16CausalAttention(torch.autograd.Function):
    """causal_attention as switchyard's precision "bf16" runs its core (attention_forward_bf16,
    docs/model.md): each of the products rounds both operands to bf16 and sums in the reference's
    dtype — scores = bf16(q)·bf16(k)ᵀ, out = bf16(P)·bf16(v); backward dP = bf16(dO)·bf16(v)ᵀ,
    dV = bf16(P)ᵀ·bf16(dO), dQ = bf16(dZ)·bf16(k), dK = bf16(dZ)ᵀ·bf16(q) — while the softmax and
    its backward run on the unrounded P and dP. q, k, v [B, H, S, hd] -> [B, H, S, hd]."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        S, hd = q.shape[-2], q.shape[-1]
        att = bf16_round(q) @ bf16_round(k).transpose(-1, -2) / math.sqrt(hd)
        mask = torch.ones(S, S, dtype=torch.bool).triu(1)
        p = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        ctx.save_for_backward(q, k, v, p)
        return bf16_round(p) @ bf16_round(v)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        q, k, v, p = ctx.saved_tensors
        scale = 1.0 / math.sqrt(q.shape[-1])
        g16 = bf16_round(g)
        dp = g16 @ bf16_round(v).transpose(-1, -2)
        dz = bf16_round(p * (dp - (p * dp).sum(-1, keepdim=True)))
        dv = bf16_round(p).transpose(-1, -2) @ g16
        return scale * (dz @ bf16_round(k)), scale * (dz.transpose(-1, -2) @ bf16_round(q)), dv


def causal_attention_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """causal_attention with switchyard's bf16 core (Bf16CausalAttention)."""
    B, S, H, hd = q.shape
    out = Bf16CausalAttention.apply(*(t.transpose(1, 2) for t in (q, k, v)))
    return out.transpose(1, 2).reshape(B, S, H * hd)


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    """t rounded to bfloat16 (to nearest, ties to even, from its float32 value), in t's dtype."""
    return t.to(torch.float32).to(torch.bfloat16).to(t.dtype)


class Bf16Linear(torch.autograd.Function):
    """x @ wᵀ as switchyard's precision "bf16" runs a weight GEMM (docs/model.md, "Precision"): both
    operands rounded to bf16, the products summed in the reference's dtype; the backward's two GEMMs
    round their operands the same way (the output gradient, the saved input and the weight)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return bf16_round(x) @ bf16_round(w).t()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        g = bf16_round(g)
        return g @ bf16_round(w), g.t() @ bf16_round(x)


def linear_fp(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w.t()


def swiglu(h: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
           linear=linear_fp) -> torch.Tensor:
    return linear(torch.nn.functional.silu(linear(h, w_gate)) * linear(h, w_up), w_down)


def topk_lower_index(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [N, k] of the k largest scores per row, by descending score, ties to the lower index."""
    # A stable descending sort keeps equal scores in index order, so the lower index comes first.
    _, order = torch.sort(scores.detach(), dim=-1, descending=True, stable=True)
    return order[:, :k]


def capacity(cf: float, n_tokens: int, k: int, n_experts: int) -> int:
    """C = ceil(cf · N · K / E), evaluated in double in that order."""
    return int(math.ceil(cf * n_tokens * k / n_experts))


def capacity_keep(topk: torch.Tensor, sel_scores: torch.Tensor, n_experts: int, cap: int,
                  policy: str) -> torch.Tensor:
    """Which of the N·K assignments survive a per-expert capacity `cap`.

    topk [N, K] expert ids, sel_scores [N, K] their scores. "probs": each expert keeps its `cap`
    assignments with the highest score (ties: lower token index); "position": the first `cap` in
    token order. Returns bool [N, K].
    """
    N, K = topk.shape
    flat_e = topk.reshape(-1)
    flat_s = sel_scores.detach().reshape(-1)
    keep = torch.zeros(N * K, dtype=torch.bool)
    for e in range(n_experts):
        pos = torch.nonzero(flat_e == e, as_tuple=False).reshape(-1)  # ascending = token order
        if pos.numel() <= cap:
            keep[pos] = True
            continue
        if policy == "position":
            keep[pos[:cap]] = True
        elif policy == "probs":
            _, order = torch.sort(flat_s[pos], descending=True, stable=True)  # stable: lower token wins
            keep[pos[order[:cap]]] = True
        else:
            raise ValueError(f"unknown drop policy {policy!r}")
    return keep.reshape(N, K)


def router_scores(z: torch.Tensor, score: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scores used for selection and gates, p used by the LBL's P_i)."""
    if score == "softmax":
        s = torch.softmax(z, dim=-1)
        return s, s
    if score == "sigmoid":
        s = torch.sigmoid(z)
        return s, s / s.sum(dim=-1, keepdim=True)
    raise ValueError(f"unknown score {score!r}")


def lbl_loss(p: torch.Tensor, topk: torch.Tensor, kept: torch.Tensor, n_experts: int, alpha: float) -> torch.Tensor:
    """α · E · Σ_i f_i · P_i with f_i = (kept assignments of i)/(K·N) detached, P_i = mean_t p[t, i]."""
    N, K = topk.shape
    counts = torch.zeros(n_experts, dtype=p.dtype)
    counts.index_add_(0, topk[kept], torch.ones(int(kept.sum()), dtype=p.dtype))
    f = counts / (K * N)
    P = p.mean(dim=0)
    return alpha * n_experts * (f.detach() * P).sum()


def z_loss(z: torch.Tensor, coef: float) -> torch.Tensor:
    return coef * (torch.logsumexp(z, dim=-1) ** 2).mean()


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

class TorchRef:
    def __init__(self, cfg: RefConfig, params: Mapping[str, np.ndarray], dtype: torch.dtype = torch.float64,
                 strict: bool = True):
        self.cfg = cfg
        self.dtype = dtype
        # The weight GEMMs (attention projections, FFNs, LM head); the router's stays in dtype.
        self.linear = Bf16Linear.apply if cfg.bf16_gemms else linear_fp
        self.attention = causal_attention_bf16 if cfg.bf16_gemms else causal_attention
        want = expected_shapes(cfg)
        missing = [n for n in want if n not in params]
        extra = [n for n in params if n not in want]
        bad = [f"{n}: {tuple(params[n].shape)} != {want[n]}" for n in want
               if n in params and tuple(params[n].shape) != want[n]]
        if strict and (missing or extra or bad):
            raise ValueError("checkpoint does not match the config:"
                             + (f"\n  missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}" if missing else "")
                             + (f"\n  unexpected: {extra[:10]}{' ...' if len(extra) > 10 else ''}" if extra else "")
                             + ("".join(f"\n  shape {b}" for b in bad[:10])))
        self.params: Dict[str, torch.Tensor] = {}
        for n in want:
            t = torch.from_numpy(np.asarray(params[n], dtype=np.float64 if dtype == torch.float64 else np.float32))
            self.params[n] = t.to(dtype).clone().requires_grad_(True)

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str, dtype: torch.dtype = torch.float64) -> "TorchRef":
        with open(os.path.join(ckpt_dir, "config.json")) as f:
            cfg = config_from_json(json.load(f))
        tensors = sy_safetensors.load(os.path.join(ckpt_dir, "model.safetensors"))
        return cls(cfg, tensors, dtype)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def moe(self, l: int, h: torch.Tensor, forced: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        """MoE block of layer l on h [N, D]. Returns (y, lbl_l, z_l, topk, kept)."""
        c, P = self.cfg, self.params
        pre = f"model.layers.{l}.mlp."
        N, E, K = h.shape[0], c.n_experts, c.top_k
        z = h @ P[pre + "gate.weight"].t()                                   # [N, E]
        scores, p = router_scores(z, c.score)
        if forced is None:
            topk = topk_lower_index(scores, K)
        else:
            topk = forced[0].to(torch.int64)
        sel = scores.gather(1, topk)                                         # [N, K]
        if c.gate == "renorm":
            gates = c.gate_scale * sel / sel.sum(dim=-1, keepdim=True)
        else:
            gates = c.gate_scale * sel
        if forced is not None:
            kept = forced[1].to(torch.bool)
        elif c.capacity_factor > 0:
            kept = capacity_keep(topk, sel, E, capacity(c.capacity_factor, N, K, E), c.drop_policy)
        else:
            kept = torch.ones(N, K, dtype=torch.bool)

        y = torch.zeros_like(h)
        for e in range(E):
            tok, slot = torch.nonzero((topk == e) & kept, as_tuple=True)
            if tok.numel() == 0:
                continue
            ep = pre + f"experts.{e}."
            out = swiglu(h[tok], P[ep + "gate_proj.weight"], P[ep + "up_proj.weight"], P[ep + "down_proj.weight"],
                         self.linear)
            y = y.index_add(0, tok, gates[tok, slot][:, None] * out)
        for j in range(c.n_shared_experts):
            sp = pre + f"shared_experts.{j}."
            y = y + swiglu(h, P[sp + "gate_proj.weight"], P[sp + "up_proj.weight"], P[sp + "down_proj.weight"],
                           self.linear)

        lbl = lbl_loss(p, topk, kept, E, c.lbl_coef)
        zl = z_loss(z, c.z_loss_coef)
        return y, lbl, zl, topk, kept

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor,
                routing: Optional[Mapping[int, Tuple[torch.Tensor, torch.Tensor]]] = None) -> Dict[str, object]:
        c, P = self.cfg, self.params
        inputs = inputs.to(torch.int64)
        targets = targets.to(torch.int64)
        B, S = inputs.shape
        N, D, H, hd = B * S, c.d_model, c.n_heads, c.head_dim
        x = P["model.embed_tokens.weight"][inputs.reshape(-1)]               # [N, D]
        lbl_total = torch.zeros((), dtype=self.dtype)
        z_total = torch.zeros((), dtype=self.dtype)
        topks: Dict[int, torch.Tensor] = {}
        kepts: Dict[int, torch.Tensor] = {}
        for l in range(c.n_layers):
            pre = f"model.layers.{l}."
            h = rmsnorm(x, P[pre + "input_layernorm.weight"], c.norm_eps)
            lin = self.linear
            q = lin(h, P[pre + "self_attn.q_proj.weight"]).reshape(B, S, H, hd)
            k = lin(h, P[pre + "self_attn.k_proj.weight"]).reshape(B, S, H, hd)
            v = lin(h, P[pre + "self_attn.v_proj.weight"]).reshape(B, S, H, hd)
            q, k = rope(q, c.rope_theta), rope(k, c.rope_theta)
            a = self.attention(q, k, v).reshape(N, D)
            x = x + lin(a, P[pre + "self_attn.o_proj.weight"])
            h = rmsnorm(x, P[pre + "post_attention_layernorm.weight"], c.norm_eps)
            if l < c.n_dense_layers:
                x = x + swiglu(h, P[pre + "mlp.gate_proj.weight"], P[pre + "mlp.up_proj.weight"],
                               P[pre + "mlp.down_proj.weight"], lin)
            else:
                forced = routing.get(l) if routing else None
                y, lbl, zl, topk, kept = self.moe(l, h, forced)
                x = x + y
                lbl_total = lbl_total + lbl
                z_total = z_total + zl
                topks[l], kepts[l] = topk, kept
        x = rmsnorm(x, P["model.norm.weight"], c.norm_eps)
        logits = self.linear(x, P["lm_head.weight"])                         # [N, V]
        ce = (torch.logsumexp(logits, dim=-1) - logits.gather(1, targets.reshape(-1, 1)).reshape(-1)).mean()
        loss = ce + lbl_total + z_total
        return {"logits": logits, "loss": loss, "ce": ce, "lbl": lbl_total, "z_loss": z_total,
                "topk": topks, "kept": kepts}

    def loss_and_grads(self, inputs: torch.Tensor, targets: torch.Tensor,
                       routing: Optional[Mapping[int, Tuple[torch.Tensor, torch.Tensor]]] = None):
        """forward + backward of the total loss; returns (forward dict, {name: grad})."""
        self.zero_grad()
        out = self.forward(inputs, targets, routing)
        out["loss"].backward()
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach()
                 for n, p in self.params.items()}
        return out, grads


# ----------------------------------------------------------------------------------------------
# Writing a checkpoint (used by the self-test; mirrors what the C++ side writes)
# ----------------------------------------------------------------------------------------------

def init_params(c: RefConfig, seed: int = 0, init_std: float = 0.02) -> Dict[str, np.ndarray]:
    """Random fp32 parameters following docs/model.md's initialisation rule (not the C++ RNG)."""
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for n, shape in expected_shapes(c).items():
        if len(shape) == 1:
            out[n] = np.ones(shape, np.float32)
            continue
        std = init_std
        if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
            std = init_std / math.sqrt(2 * c.n_layers)
        out[n] = (rng.standard_normal(shape) * std).astype(np.float32)
    return out


def config_json(c: RefConfig) -> Dict[str, object]:
    """A config.json with the HF Qwen3-MoE keys and the "switchyard" object this module reads."""
    return {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "vocab_size": c.vocab_size, "hidden_size": c.d_model, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_heads, "head_dim": c.head_dim,
        "num_experts": c.n_experts, "num_experts_per_tok": c.top_k, "moe_intermediate_size": c.d_expert,
        "intermediate_size": c.d_dense, "rope_theta": c.rope_theta, "rms_norm_eps": c.norm_eps,
        "norm_topk_prob": c.gate == "renorm", "tie_word_embeddings": False,
        "max_position_embeddings": c.seq_len, "torch_dtype": "float32",
        "switchyard": {
            "model": {"vocab_size": c.vocab_size, "d_model": c.d_model, "n_layers": c.n_layers,
                      "n_heads": c.n_heads, "seq_len": c.seq_len, "n_experts": c.n_experts,
                      "top_k": c.top_k, "d_expert": c.d_expert, "n_shared_experts": c.n_shared_experts,
                      "d_shared": c.d_shared, "n_dense_layers": c.n_dense_layers, "d_dense": c.d_dense,
                      "rope_theta": c.rope_theta, "norm_eps": c.norm_eps},
            "router": {"type": "topk", "score": c.score, "gate": c.gate, "gate_scale": c.gate_scale,
                       "capacity_factor": c.capacity_factor, "drop_policy": c.drop_policy,
                       "z_loss_coef": c.z_loss_coef},
            "balance": {"terms": [{"type": "lbl", "scope": "micro", "coef": c.lbl_coef}]},
        },
    }


def write_checkpoint(ckpt_dir: str, c: RefConfig, params: Mapping[str, np.ndarray]) -> None:
    os.makedirs(ckpt_dir, exist_ok=True)
    sy_safetensors.save(os.path.join(ckpt_dir, "model.safetensors"), params, metadata={"format": "pt"})
    with open(os.path.join(ckpt_dir, "config.json"), "w") as f:
        json.dump(config_json(c), f, indent=2)
