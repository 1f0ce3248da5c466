#!/usr/bin/python3
"""Self-test of the Python side: the safetensors reader/writer, the reference model's pieces
(RoPE, top-K, capacity, LBL, z-loss, gates), its gradients, and the parity script's plumbing
(on dumps made by the reference itself in float32). Runs in a few seconds, needs no C++.

    /usr/bin/python3 tests/python/test_torch_ref.py        # prints "N passed, M failed", exit 0 iff M == 0
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import sys
import tempfile
import traceback
from dataclasses import replace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy_safetensors  # noqa: E402
import test_parity  # noqa: E402
import torch_ref as tr  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def tiny_config(**kw) -> tr.RefConfig:
    base = dict(vocab_size=64, d_model=32, n_layers=3, n_heads=4, seq_len=16, n_experts=8, top_k=2,
                d_expert=16, n_shared_experts=1, d_shared=8, n_dense_layers=1, d_dense=24,
                rope_theta=10000.0, norm_eps=1e-6, score="softmax", gate="renorm", gate_scale=1.0,
                capacity_factor=0.0, drop_policy="probs", z_loss_coef=1e-3, lbl_coef=0.01)
    base.update(kw)
    c = tr.RefConfig(**base)
    c.validate()
    return c


def random_tokens(c: tr.RefConfig, B: int, S: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, c.vocab_size, size=(B, S + 1)).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------

@test
def safetensors_round_trip():
    rng = np.random.default_rng(0)
    tensors = {
        "a.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "b.f64": rng.standard_normal((2, 2, 2)),
        "c.i32": rng.integers(-2**31, 2**31 - 1, size=(7,), dtype=np.int64).astype(np.int32),
        "d.i64": rng.integers(-2**62, 2**62, size=(4, 1)),
        "e.u8": rng.integers(0, 256, size=(3, 3)).astype(np.uint8),
        "scalar": np.array(3.25, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "odd": np.arange(3, dtype=np.uint8),  # 3 bytes: later tensors are not 8-aligned in the buffer
    }
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        sy_safetensors.save(p, tensors, metadata={"format": "pt", "note": "x"})
        back, meta = sy_safetensors.load(p, with_metadata=True)
        assert meta == {"format": "pt", "note": "x"}, meta
        assert set(back) == set(tensors), (set(back), set(tensors))
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype, (k, back[k].dtype, v.dtype)
            assert back[k].shape == v.shape, (k, back[k].shape, v.shape)
            assert np.array_equal(back[k], v), k
        raw = open(p, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        assert (8 + n) % 8 == 0, n
        header = json.loads(raw[8:8 + n])
        assert header["a.f32"]["dtype"] == "F32" and header["e.u8"]["dtype"] == "U8"
        assert header["scalar"]["shape"] == []
        # The data buffer is exactly the sum of the tensors, offsets contiguous.
        ends = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
        assert ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:]))
        assert len(raw) == 8 + n + ends[-1][1]


@test
def safetensors_rejects_bad_files():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "bad.safetensors")
        hdr = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
        try:
            sy_safetensors.load(p)
            raise AssertionError("inconsistent data_offsets accepted")
        except sy_safetensors.SafetensorsError:
            pass
        try:
            sy_safetensors.save(p, {"x": np.zeros(2, np.float16)})
            raise AssertionError("F16 accepted")
        except sy_safetensors.SafetensorsError:
            pass


@test
def checkpoint_round_trip():
    c = tiny_config()
    params = tr.init_params(c, seed=3)
    with tempfile.TemporaryDirectory() as d:
        tr.write_checkpoint(d, c, params)
        ref = tr.TorchRef.from_checkpoint(d)
        assert ref.cfg == c, (ref.cfg, c)
        for n, v in params.items():
            assert ref.params[n].dtype == torch.float64
            assert np.array_equal(ref.params[n].detach().numpy(), v.astype(np.float64)), n
        # Every name of docs/model.md, nothing else.
        assert set(params) == set(tr.expected_shapes(c))
        assert "model.layers.0.mlp.gate_proj.weight" in params          # dense layer 0
        assert "model.layers.1.mlp.experts.7.down_proj.weight" in params
        assert "model.layers.2.mlp.shared_experts.0.up_proj.weight" in params
        assert params["model.layers.1.mlp.shared_experts.0.up_proj.weight"].shape == (8, 32)
        assert "model.layers.0.mlp.gate.weight" not in params


# ----------------------------------------------------------------------------------------------
# The pieces
# ----------------------------------------------------------------------------------------------

@test
def rope_equals_complex_rotation():
    B, S, H, hd, theta = 2, 11, 3, 16, 500.0
    x = torch.randn(B, S, H, hd, dtype=torch.float64)
    got = tr.rope(x, theta)
    half = hd // 2
    xc = torch.complex(x[..., :half], x[..., half:])                     # pair (i, i + hd/2)
    pos = torch.arange(S, dtype=torch.float64)
    freq = torch.tensor([theta ** (-2.0 * i / hd) for i in range(half)], dtype=torch.float64)
    rot = torch.polar(torch.ones(S, half, dtype=torch.float64), pos[:, None] * freq[None])
    yc = xc * rot[None, :, None, :]
    want = torch.cat([yc.real, yc.imag], dim=-1)
    assert torch.allclose(got, want, atol=1e-12, rtol=0), (got - want).abs().max()
    assert torch.equal(got[:, 0], x[:, 0])                                 # position 0: identity
    # Relative: q(s)·k(t) depends only on s − t.
    q, k = torch.randn(hd, dtype=torch.float64), torch.randn(hd, dtype=torch.float64)
    qs = tr.rope(q.expand(1, S, 1, hd).clone(), theta)[0, :, 0]
    ks = tr.rope(k.expand(1, S, 1, hd).clone(), theta)[0, :, 0]
    assert abs(float(qs[5] @ ks[2]) - float(qs[8] @ ks[5])) < 1e-10


@test
def rmsnorm_formula():
    x = torch.randn(5, 8, dtype=torch.float64)
    w = torch.randn(8, dtype=torch.float64)
    y = tr.rmsnorm(x, w, 1e-5)
    want = torch.stack([x[i] / math.sqrt(float((x[i] ** 2).mean()) + 1e-5) * w for i in range(5)])
    assert torch.allclose(y, want, atol=1e-12)


@test
def attention_is_causal_and_matches_loop():
    B, S, H, hd = 1, 6, 2, 4
    q, k, v = (torch.randn(B, S, H, hd, dtype=torch.float64) for _ in range(3))
    a = tr.causal_attention(q, k, v).reshape(B, S, H, hd)
    for s in range(S):
        for h in range(H):
            w = torch.softmax(torch.stack([q[0, s, h] @ k[0, t, h] for t in range(s + 1)]) / math.sqrt(hd), 0)
            want = sum(w[t] * v[0, t, h] for t in range(s + 1))
            assert torch.allclose(a[0, s, h], want, atol=1e-12)


@test
def topk_ties_to_lower_index_and_descending_slots():
    s = torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.3],
                      [0.5, 0.5, 0.5, 0.5, 0.5],
                      [0.0, 0.1, 0.2, 0.9, 0.4]], dtype=torch.float64)
    got = tr.topk_lower_index(s, 3).tolist()
    assert got == [[1, 2, 4], [0, 1, 2], [3, 4, 2]], got


@test
def renorm_softmax_equals_softmax_over_selected_logits():
    c = tiny_config(n_layers=1, n_dense_layers=0, n_shared_experts=0, top_k=3, gate_scale=2.5)
    params = {n: torch.from_numpy(v.astype(np.float64)) for n, v in tr.init_params(c, 5).items()}
    ref = tr.TorchRef(c, {n: v.numpy() for n, v in params.items()})
    h = torch.randn(10, c.d_model, dtype=torch.float64)
    z = h @ ref.params["model.layers.0.mlp.gate.weight"].detach().t()
    topk = tr.topk_lower_index(torch.softmax(z, -1), 3)
    g_want = 2.5 * torch.softmax(z.gather(1, topk), dim=-1)
    # Recompute the block's output by hand with those gates.
    y, _, _, topk2, kept = ref.moe(0, h)
    assert torch.equal(topk, topk2) and bool(kept.all())
    P = {n: p.detach() for n, p in ref.params.items()}
    want = torch.zeros_like(h)
    for t in range(10):
        for i in range(3):
            e = int(topk[t, i])
            pre = f"model.layers.0.mlp.experts.{e}."
            want[t] += g_want[t, i] * tr.swiglu(h[t:t + 1], P[pre + "gate_proj.weight"], P[pre + "up_proj.weight"],
                                                P[pre + "down_proj.weight"])[0]
    assert torch.allclose(y.detach(), want, atol=1e-12), (y - want).abs().max()


@test
def sigmoid_raw_gates():
    c = tiny_config(n_layers=1, n_dense_layers=0, n_shared_experts=0, score="sigmoid", gate="raw",
                    gate_scale=1.7, top_k=1)
    ref = tr.TorchRef(c, tr.init_params(c, 6))
    h = torch.randn(7, c.d_model, dtype=torch.float64)
    y, _, _, topk, _ = ref.moe(0, h)
    P = {n: p.detach() for n, p in ref.params.items()}
    z = h @ P["model.layers.0.mlp.gate.weight"].t()
    assert torch.equal(topk[:, 0], z.argmax(-1))
    for t in range(7):
        e = int(topk[t, 0])
        pre = f"model.layers.0.mlp.experts.{e}."
        want = 1.7 * torch.sigmoid(z[t, e]) * tr.swiglu(h[t:t + 1], P[pre + "gate_proj.weight"],
                                                          P[pre + "up_proj.weight"], P[pre + "down_proj.weight"])[0]
        assert torch.allclose(y[t].detach(), want, atol=1e-12)


@test
def k1_renorm_refused():
    try:
        tiny_config(top_k=1, gate="renorm")
        raise AssertionError("K = 1 with renorm accepted")
    except ValueError:
        pass


@test
def lbl_is_alpha_at_uniform_routing():
    E, K, N, alpha = 8, 2, 32, 0.037
    # Every expert gets exactly N·K/E assignments; the router's probabilities are uniform.
    topk = torch.tensor([[(2 * t) % E, (2 * t + 1) % E] for t in range(N)])
    kept = torch.ones(N, K, dtype=torch.bool)
    for score in ("softmax", "sigmoid"):
        z = torch.full((N, E), 0.3, dtype=torch.float64)
        _, p = tr.router_scores(z, score)
        v = float(tr.lbl_loss(p, topk, kept, E, alpha))
        assert abs(v - alpha) < 1e-14, (score, v)
    # Collapse onto one expert with p concentrated there: LBL → α·E.
    z = torch.zeros(N, E, dtype=torch.float64)
    z[:, 0] = 60.0
    _, p = tr.router_scores(z, "softmax")
    top1 = torch.zeros(N, 1, dtype=torch.int64)
    v = float(tr.lbl_loss(p, top1, torch.ones(N, 1, dtype=torch.bool), E, alpha))
    assert abs(v - alpha * E) < 1e-9, v


@test
def lbl_counts_only_kept_and_f_is_detached():
    E, N, K, alpha = 4, 6, 2, 0.5
    z = torch.randn(N, E, dtype=torch.float64, requires_grad=True)
    s, p = tr.router_scores(z, "softmax")
    topk = tr.topk_lower_index(s, K)
    kept = torch.rand(N, K) > 0.3
    loss = tr.lbl_loss(p, topk, kept, E, alpha)
    counts = torch.zeros(E, dtype=torch.float64)
    for t in range(N):
        for i in range(K):
            if kept[t, i]:
                counts[topk[t, i]] += 1
    f = counts / (K * N)
    assert abs(float(loss) - alpha * E * float((f * p.detach().mean(0)).sum())) < 1e-14
    loss.backward()
    # d/dz of α·E·Σ f_i·mean_t p[t,i] with f constant.
    z2 = z.detach().clone().requires_grad_(True)
    (alpha * E * (f * torch.softmax(z2, -1).mean(0)).sum()).backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-14)


@test
def z_loss_formula():
    z = torch.randn(9, 5, dtype=torch.float64)
    want = 0.01 * np.mean([math.log(sum(math.exp(float(v)) for v in row)) ** 2 for row in z])
    assert abs(float(tr.z_loss(z, 0.01)) - want) < 1e-14


@test
def capacity_formula():
    assert tr.capacity(1.0, 2048, 4, 16) == 512
    assert tr.capacity(1.25, 2048, 4, 16) == 640
    assert tr.capacity(1.0, 10, 2, 8) == 3          # ceil(2.5)
    assert tr.capacity(0.01, 10, 2, 8) == 1


@test
def capacity_keeps_at_most_c_preferring_higher_scores():
    torch.manual_seed(0)
    N, E, K = 64, 8, 2
    z = torch.randn(N, E, dtype=torch.float64)
    z[:, 3] += 2.0                                  # overload expert 3
    s = torch.softmax(z, -1)
    topk = tr.topk_lower_index(s, K)
    sel = s.gather(1, topk)
    C = tr.capacity(0.5, N, K, E)                   # 8
    keep = tr.capacity_keep(topk, sel, E, C, "probs")
    for e in range(E):
        m = topk == e
        n_kept = int((m & keep).sum())
        assert n_kept == min(C, int(m.sum())), (e, n_kept, int(m.sum()), C)
        if int(m.sum()) > C:
            kept_min = float(sel[m & keep].min())
            dropped_max = float(sel[m & ~keep].max())
            assert kept_min >= dropped_max, (e, kept_min, dropped_max)
    assert int((topk == 3).sum()) > C                # the test exercised a drop


@test
def capacity_probs_ties_prefer_lower_token():
    topk = torch.tensor([[0], [0], [0], [0]])
    sel = torch.tensor([[0.5], [0.7], [0.5], [0.5]], dtype=torch.float64)
    keep = tr.capacity_keep(topk, sel, 1, 2, "probs")
    assert keep[:, 0].tolist() == [True, True, False, False], keep


@test
def capacity_position_keeps_earliest_tokens():
    torch.manual_seed(1)
    N, E, K = 40, 4, 2
    s = torch.softmax(torch.randn(N, E, dtype=torch.float64) + torch.tensor([3.0, 0, 0, 0]), -1)
    topk = tr.topk_lower_index(s, K)
    C = tr.capacity(0.5, N, K, E)                   # 10
    keep = tr.capacity_keep(topk, s.gather(1, topk), E, C, "position")
    for e in range(E):
        toks = torch.nonzero(topk == e, as_tuple=True)[0]
        kept_toks = torch.nonzero((topk == e) & keep, as_tuple=True)[0]
        assert kept_toks.tolist() == toks[:C].tolist(), (e, kept_toks.tolist(), toks.tolist())
    assert int((topk == 0).sum()) > C


@test
def dropped_assignments_contribute_zero_without_renorm():
    c = tiny_config(n_layers=1, n_dense_layers=0, n_shared_experts=0, capacity_factor=0.25, top_k=2,
                    drop_policy="position")
    ref = tr.TorchRef(c, tr.init_params(c, 8))
    h = torch.randn(40, c.d_model, dtype=torch.float64)
    y, _, _, topk, kept = ref.moe(0, h)
    assert not bool(kept.all())
    y_full, _, _, _, _ = ref.moe(0, h, forced=(topk, torch.ones_like(kept)))
    P = {n: p.detach() for n, p in ref.params.items()}
    s = torch.softmax(h @ P["model.layers.0.mlp.gate.weight"].t(), -1).gather(1, topk)
    g = s / s.sum(-1, keepdim=True)                 # gates from all K, not renormalised after drops
    diff = torch.zeros_like(h)
    for t, i in torch.nonzero(~kept).tolist():
        pre = f"model.layers.0.mlp.experts.{int(topk[t, i])}."
        diff[t] += g[t, i] * tr.swiglu(h[t:t + 1], P[pre + "gate_proj.weight"], P[pre + "up_proj.weight"],
                                       P[pre + "down_proj.weight"])[0]
    assert torch.allclose((y_full - y).detach(), diff, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# The whole model
# ----------------------------------------------------------------------------------------------

VARIANTS = {
    "softmax-renorm": {},
    "sigmoid-renorm-cap-probs": dict(score="sigmoid", capacity_factor=1.0, drop_policy="probs"),
    "softmax-raw-cap-position": dict(gate="raw", gate_scale=2.0, capacity_factor=0.75, drop_policy="position"),
    "no-dense-no-shared": dict(n_dense_layers=0, n_shared_experts=0, z_loss_coef=0.0),
}


@test
def gradients_finite_and_match_finite_differences():
    for name, kw in VARIANTS.items():
        c = tiny_config(**kw)
        ref = tr.TorchRef(c, tr.init_params(c, 11))
        tok = torch.from_numpy(random_tokens(c, 2, c.seq_len).astype(np.int64))
        inp, tgt = tok[:, :-1], tok[:, 1:]
        out, grads = ref.loss_and_grads(inp, tgt)
        assert set(grads) == set(tr.expected_shapes(c))
        for n, g in grads.items():
            assert bool(torch.isfinite(g).all()), (name, n)
        assert float(out["loss"]) == float(out["ce"] + out["lbl"] + out["z_loss"])
        assert abs(float(out["ce"]) - math.log(c.vocab_size)) < 0.5, float(out["ce"])   # near-uniform at init
        assert float(out["lbl"]) > 0 if c.lbl_coef > 0 else float(out["lbl"]) == 0
        # Directional finite difference on a few parameters (routing is piecewise constant; a
        # step of 1e-6 does not cross a boundary here).
        for pn in ["model.layers.1.mlp.gate.weight", "model.layers.2.mlp.experts.3.up_proj.weight",
                   "model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight", "lm_head.weight"]:
            p = ref.params[pn]
            d = torch.randn_like(p)
            eps = 1e-6
            with torch.no_grad():
                p += eps * d
                lp = float(ref.forward(inp, tgt)["loss"])
                p -= 2 * eps * d
                lm = float(ref.forward(inp, tgt)["loss"])
                p += eps * d
            fd = (lp - lm) / (2 * eps)
            an = float((grads[pn] * d).sum())
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)), (name, pn, fd, an)


@test
def router_receives_gradient_from_every_term():
    c = tiny_config(n_dense_layers=0, n_layers=1)
    ref = tr.TorchRef(c, tr.init_params(c, 12))
    tok = torch.from_numpy(random_tokens(c, 2, c.seq_len).astype(np.int64))
    for key in ("ce", "lbl", "z_loss"):
        ref.zero_grad()
        out = ref.forward(tok[:, :-1], tok[:, 1:])
        out[key].backward()
        g = ref.params["model.layers.0.mlp.gate.weight"].grad
        assert g is not None and float(g.abs().max()) > 0, key


@test
def causal_without_capacity():
    c = tiny_config()
    ref = tr.TorchRef(c, tr.init_params(c, 13))
    tok = torch.from_numpy(random_tokens(c, 1, c.seq_len).astype(np.int64))
    tok2 = tok.clone()
    tok2[0, 10:] = (tok2[0, 10:] + 1) % c.vocab_size
    with torch.no_grad():
        a = ref.forward(tok[:, :-1], tok[:, 1:])["logits"]
        b = ref.forward(tok2[:, :-1], tok2[:, 1:])["logits"]
    assert torch.allclose(a[:10], b[:10], atol=1e-12) and not torch.allclose(a[10:], b[10:])


# ----------------------------------------------------------------------------------------------
# The parity script, on dumps made by the reference in float32
# ----------------------------------------------------------------------------------------------

def make_dump(d: str, c: tr.RefConfig, B: int, S: int, flip_token: int = -1) -> None:
    """Writes DUMP_DIR as the C++ side would, computing "expected" with the reference in float32.
    flip_token >= 0: in the first MoE layer, that token's last slot takes its (K+1)-th choice instead,
    as a float32 near-tie flip would."""
    params = tr.init_params(c, 21)
    tr.write_checkpoint(os.path.join(d, "checkpoint"), c, params)
    tokens = random_tokens(c, B, S, seed=22)
    sy_safetensors.save(os.path.join(d, "batch.safetensors"), {"tokens": tokens})
    f32 = tr.TorchRef(c, params, dtype=torch.float32)
    inp = torch.from_numpy(tokens[:, :-1].astype(np.int64))
    tgt = torch.from_numpy(tokens[:, 1:].astype(np.int64))
    out, grads = f32.loss_and_grads(inp, tgt)
    if flip_token >= 0:
        l0 = c.n_dense_layers
        tk, kp = out["topk"][l0].clone(), out["kept"][l0].clone()
        # Any expert not already selected stands in for the (K+1)-th choice.
        chosen = set(tk[flip_token].tolist())
        alt = next(e for e in range(c.n_experts) if e not in chosen)
        tk[flip_token, -1] = alt
        out, grads = f32.loss_and_grads(inp, tgt, routing={l0: (tk, kp)})
    exp = {"logits": out["logits"].detach().numpy(), "loss": out["loss"].detach().numpy(),
           "ce": out["ce"].detach().numpy(), "lbl": out["lbl"].detach().numpy(),
           "z_loss": out["z_loss"].detach().numpy()}
    exp.update({f"grad.{n}": g.numpy() for n, g in grads.items()})
    for l, t in out["topk"].items():
        exp[f"topk.{l}"] = t.numpy().astype(np.int32)
        exp[f"kept.{l}"] = out["kept"][l].numpy().astype(np.uint8)
    sy_safetensors.save(os.path.join(d, "expected.safetensors"), exp)


def run_parity(args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = test_parity.main(args)
    return rc, buf.getvalue()


@test
def parity_passes_on_float32_reference_dump():
    c = tiny_config(capacity_factor=1.25, score="sigmoid")
    with tempfile.TemporaryDirectory() as d:
        make_dump(d, c, 2, 16)
        rc, text = run_parity([d, "--rtol", "1e-4"])
        assert rc == 0, text
        assert "PASS" in text and "0/32 tokens differ" in text, text


@test
def parity_fails_on_a_wrong_gradient():
    c = tiny_config()
    with tempfile.TemporaryDirectory() as d:
        make_dump(d, c, 2, 16)
        p = os.path.join(d, "expected.safetensors")
        exp = sy_safetensors.load(p)
        exp["grad.model.layers.1.mlp.experts.2.down_proj.weight"] *= 1.01
        sy_safetensors.save(p, exp)
        rc, text = run_parity([d])
        assert rc == 1, text
        assert "FAIL: over rtol" in text and "experts.2.down_proj" in text.split("FAIL: over rtol")[1], text


@test
def parity_fails_on_a_missing_gradient():
    c = tiny_config()
    with tempfile.TemporaryDirectory() as d:
        make_dump(d, c, 2, 16)
        p = os.path.join(d, "expected.safetensors")
        exp = sy_safetensors.load(p)
        del exp["grad.model.norm.weight"]
        sy_safetensors.save(p, exp)
        rc, text = run_parity([d])
        assert rc == 1 and "missing" in text, text


@test
def parity_tolerates_one_near_tie_flip_but_not_many():
    c = tiny_config(seq_len=128)
    with tempfile.TemporaryDirectory() as d:
        make_dump(d, c, 2, 128, flip_token=37)      # 1 of 256 tokens = 0.39% <= 0.5%
        rc, text = run_parity([d])
        assert rc == 0, text
        assert "1/256 tokens differ" in text and "near-tie flips, tolerated" in text, text
        assert "near-tie flips (float32 vs float64) in layer(s) [1]" in text, text
        rc, text = run_parity([d, "--routing-tol", "0.001"])
        assert rc == 1 and "routing differs" in text, text


def main() -> int:
    torch.manual_seed(0)
    passed = failed = 0
    only = set(sys.argv[1:])
    for fn in TESTS:
        if only and fn.__name__ not in only:
            continue
        try:
            fn()
            passed += 1
            print(f"ok    {fn.__name__}")
        except Exception:  # noqa: BLE001 — report every failure, keep going
            failed += 1
            print(f"FAIL  {fn.__name__}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
