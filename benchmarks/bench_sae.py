"""SAE-BrainMap throughput: SAE training (tokens/s) and unit-voxel similarity (pairs/s).

1. SAE training: ``cortexalign.sae.train_sae`` (streaming, relu_tied, the seed's objective) vs an
   independent plain-PyTorch loop of the same SAE written here (same data, batch, optimiser).
2. Similarity: ``match_units_to_voxels`` (chunked float32 matmuls + on-the-fly reductions) vs a
   numpy baseline (``np.corrcoef`` of units and voxels per layer, then argmax).

    python benchmarks/bench_sae.py --quick            # CPU-sized
    python benchmarks/bench_sae.py --device cuda      # full sizes (d=768, 12,288 latents, ...)
    python benchmarks/bench_sae.py --device cuda --json sae.json
    OMP_NUM_THREADS=2 python benchmarks/bench_sae.py --device cpu --threads 2 \
        --train-size 200704 768 5 4096 --repeats 3   # SAE training only, reduced size
    python benchmarks/bench_sae.py --device cpu --train-size 98304 768 5 4096 --steady
        # steady state: both sides continue from one SAE warmed up on planted-sparse tokens
    python benchmarks/bench_sae.py --sweep 768 5 4096 --repeats 3   # one step vs density (CPU)

Every training comparison states the density of z (share of non-zero latents) it ran at: on the
CPU ``train_sae`` uses sparse kernels once z is sparse (``cortexalign.sae.fused``), so its speed
depends on it, while the plain loop's does not.

At full size the numpy baseline runs on a sub-problem (one layer, ``ref_units`` units x
``ref_voxels`` voxels; the (k + n)^2 float64 correlation matrix of the whole layer would take minutes)
and is compared on that sub-problem with ``match_units_to_voxels`` run on the same subset.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from cortexalign.sae import SAEConfig, array_chunks, build_sae, train_sae
from cortexalign.sae.fused import relu_tied_seed_loss as fused_loss
from cortexalign.sae.match import match_units_to_voxels


def reference_relu_tied(x_nd: torch.Tensor, cfg: SAEConfig, device: str,
                        init: dict[str, torch.Tensor] | None = None):
    """The seed's SAE in plain PyTorch: returns (seconds for one pass over x_nd, final parameters).

    Same maths and hyperparameters as ``train_sae`` with ``relu_tied`` (tied W, no decoder-norm
    step, the seed's objective with lambda warmed up over ``cfg.l1_warmup_steps``, inputs scaled by
    c from the first batch, AdamW), as a plain dense autograd loop, without ``train_sae``'s
    shuffling, input checks or dead-latent bookkeeping. ``init`` (``W``, ``b_pre``, ``b_lat``,
    ``input_scale``) continues from given parameters, as ``train_sae(..., init=sae)`` does. The
    timed region includes building the parameters and the optimiser, as ``train_sae``'s does.
    """
    d, batch = x_nd.shape[1], cfg.batch_size
    _sync(device)
    t0 = time.perf_counter()
    if init is None:
        g = torch.Generator().manual_seed(cfg.seed)  # build_sae's initialisation
        W = torch.randn(cfg.d_sae, d, generator=g)
        W = W / W.norm(dim=1, keepdim=True) / cfg.expansion ** 0.5
        x0 = x_nd[:batch].double()
        c = (d / float(x0.pow(2).sum(1).mean())) ** 0.5 if cfg.normalize_inputs else 1.0
        b_pre, b_lat = (c * x_nd[:batch]).mean(0), torch.zeros(cfg.d_sae)
    else:
        W, b_pre, b_lat, c = (init["W"], init["b_pre"], init["b_lat"], float(init["input_scale"]))
    W, b_pre, b_lat = (t.detach().clone().to(device).requires_grad_() for t in (W, b_pre, b_lat))
    opt = torch.optim.AdamW([W, b_pre, b_lat], lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = cfg.l1_warmup_steps
    for step, start in enumerate(range(0, x_nd.shape[0] - batch + 1, batch)):
        x = x_nd[start:start + batch].to(device) * c
        lam = cfg.l1_coef * (min(1.0, (step + 1) / warmup) if warmup else 1.0)
        z = torch.relu((x - b_pre) @ W.T + b_lat)
        xh = z @ W + b_pre
        xn2 = (x * x).sum(1)
        loss = (((xh - x) ** 2).sum(1) / xn2).mean() + lam * (z.abs().sum(1) / xn2.sqrt()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return seconds, {"W": W.detach(), "b_pre": b_pre.detach(), "b_lat": b_lat.detach(),
                     "input_scale": torch.tensor(c)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def density(params: dict[str, torch.Tensor], x_bd: torch.Tensor) -> float:
    """Share of the (token, latent) entries of z that are non-zero for the tokens x_bd."""
    x = x_bd.to(params["W"].device) * float(params["input_scale"])
    z = torch.relu((x - params["b_pre"]) @ params["W"].T + params["b_lat"])
    return float((z > 0).double().mean())


def _params(sae) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in sae.state_dict().items()}


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _compare(x_nd: torch.Tensor, cfg: SAEConfig, device: str, repeats: int, init=None) -> dict:
    """Best of ``repeats`` interleaved runs of each side (ours, then the plain loop, per repeat)."""
    ours, ref, ours_cpu, ref_cpu, n_tokens = [], [], [], [], 0
    sae_init = None
    if init is not None:
        sae_init = build_sae(cfg)
        sae_init.load_state_dict(init)
    for _ in range(repeats):
        _sync(device)
        c0, t0 = _cpu_s(), time.perf_counter()
        out = train_sae(array_chunks(x_nd, 65536), cfg, device=device, init=sae_init)
        _sync(device)
        ours.append(time.perf_counter() - t0)
        ours_cpu.append(_cpu_s() - c0)
        n_tokens = out.n_tokens
        c0 = _cpu_s()
        secs, ref_params = reference_relu_tied(x_nd, cfg, device, init)
        ref.append(secs)
        ref_cpu.append(_cpu_s() - c0)
    assert n_tokens == x_nd.shape[0] // cfg.batch_size * cfg.batch_size  # the same tokens
    probe = x_nd[: cfg.batch_size]
    dens = {"start": density(init, probe) if init is not None else float("nan"),
            "end_cortexalign": density(_params(out.sae), probe),
            "end_reference": density(ref_params, probe)}
    i, j = int(np.argmin(ours)), int(np.argmin(ref))
    return {"tokens": n_tokens, "cortexalign_tokens_per_s": n_tokens / ours[i],
            "reference_tokens_per_s": n_tokens / ref[j], "ratio": ref[j] / ours[i],
            "cortexalign_runs_s": ours, "reference_runs_s": ref, "cortexalign_cpu_s": ours_cpu,
            "reference_cpu_s": ref_cpu, "cpu_ratio": min(ref_cpu) / min(ours_cpu),
            "density": dens, "load": os.getloadavg()}


def _report(title: str, res: dict) -> None:
    d = res["density"]
    print(title)
    for side, key in (("cortexalign train_sae", "cortexalign"), ("plain PyTorch loop   ", "reference")):
        runs = ", ".join(f"{res['tokens'] / t:,.0f}" for t in res[f"{key}_runs_s"])
        cpu = ", ".join(f"{t:.1f}" for t in res[f"{key}_cpu_s"])
        print(f"  {side}: {res[f'{key}_tokens_per_s']:12,.0f} tokens/s  (runs: {runs}; "
              f"CPU s: {cpu})")
    print(f"  ratio (wall, best)    : {res['ratio']:.3f}x   (CPU time, best: {res['cpu_ratio']:.3f}x)")
    print(f"  density of z (share of non-zero latents on the first batch): start {d['start']:.4f}, "
          f"end {d['end_cortexalign']:.4f} (ours) / {d['end_reference']:.4f} (plain)")
    print(f"  load average {', '.join(f'{v:.2f}' for v in res['load'])}")


def bench_training(n: int, d: int, expansion: int, batch: int, device: str,
                   repeats: int = 1) -> dict:
    """From a fresh SAE on Gaussian tokens (the codes stay dense: the dense path's cost)."""
    x_nd = torch.randn(n, d)
    cfg = SAEConfig(d_in=d, expansion=expansion, batch_size=batch, dead_window=10 * n)
    train_sae(array_chunks(x_nd[: 2 * batch]), cfg, device=device)  # warm-up
    reference_relu_tied(x_nd[: 2 * batch], cfg, device)
    res = _compare(x_nd, cfg, device, repeats)
    _report(f"SAE training, fresh start  relu_tied d={d} latents={d * expansion} batch={batch} "
            f"tokens={n} device={device} threads={torch.get_num_threads()} best of {repeats}", res)
    return {"d_in": d, "latents": d * expansion, "batch": batch, "device": device,
            "threads": torch.get_num_threads(), "repeats": repeats, **res}


def planted_tokens(n: int, d: int, m: int, s: int, noise: float, seed: int = 0) -> torch.Tensor:
    """(n, d) tokens: s of m unit-norm random atoms per token, coefficients U(0.5, 2), plus noise."""
    g = torch.Generator().manual_seed(seed)
    atoms_md = torch.randn(m, d, generator=g)
    atoms_md /= atoms_md.norm(dim=1, keepdim=True)
    out = torch.empty(n, d)
    for a in range(0, n, 4096):
        b = min(n, a + 4096)
        idx = torch.rand(b - a, m, generator=g).topk(s, dim=1).indices
        codes = torch.zeros(b - a, m).scatter_(1, idx, 0.5 + 1.5 * torch.rand(b - a, s, generator=g))
        out[a:b] = codes @ atoms_md + noise * torch.randn(b - a, d, generator=g)
    return out


def bench_steady(n: int, d: int, expansion: int, batch: int, device: str, repeats: int,
                 active: int, warm_epochs: int) -> dict:
    """Steady state: both sides continue from the same SAE, warmed up on planted-sparse tokens.

    The tokens are ``active`` atoms of a random dictionary of ``expansion * d`` atoms plus noise
    (``planted_tokens``); the shared warm-up is ``warm_epochs`` passes of ``train_sae`` (default
    config) over them, so the density is the one training reaches, not a chosen one. Then each side
    makes one timed pass from the warmed-up parameters (a fresh AdamW each, lambda at full weight).
    """
    x_nd = planted_tokens(n, d, expansion * d, active, noise=0.05)
    cfg = SAEConfig(d_in=d, expansion=expansion, batch_size=batch, dead_window=10 ** 12,
                    l1_warmup_steps=50)
    t0 = time.perf_counter()
    warm = train_sae((x_nd for _ in range(warm_epochs)), cfg, device=device).sae
    warm_s = time.perf_counter() - t0
    steady = SAEConfig(**{**cfg.model_dump(), "l1_warmup_steps": 0})
    res = _compare(x_nd, steady, device, repeats, init=_params(warm))
    _report(f"SAE training, steady state  relu_tied d={d} latents={d * expansion} batch={batch} "
            f"tokens={n} ({active} planted atoms/token) after {warm_epochs} warm-up epochs "
            f"({warm_s:.0f} s) device={device} threads={torch.get_num_threads()} "
            f"best of {repeats}", res)
    return {"d_in": d, "latents": d * expansion, "batch": batch, "device": device,
            "active_atoms": active, "warm_epochs": warm_epochs, "warm_s": warm_s,
            "threads": torch.get_num_threads(), "repeats": repeats, **res}


def bench_step_sweep(d: int, expansion: int, batch: int, densities: list[float],
                     repeats: int) -> dict:
    """One loss + backward at planted densities: the fused step forced sparse, forced dense, and
    plain autograd of the same loss (where the sparse kernels start to pay: ``SPARSE_MAX_DENSITY``).

    The density is set by shifting every latent's bias so that the given share of the (token,
    latent) entries of a random relu_tied SAE is positive on Gaussian tokens.
    """
    g = torch.Generator().manual_seed(0)
    x_bd = torch.randn(batch, d, generator=g)
    sae = build_sae(SAEConfig(d_in=d, expansion=expansion)).train()
    pre = (x_bd @ sae.W.detach().T).flatten()
    rows = []
    for target in densities:
        with torch.no_grad():
            sae.b_lat.fill_(-float(pre.kthvalue(max(1, round((1 - target) * pre.numel()))).values))

        def plain():
            W, b_pre, b_lat = sae.W, sae.b_pre, sae.b_lat
            z = torch.relu((x_bd - b_pre) @ W.T + b_lat)
            xn2 = (x_bd * x_bd).sum(1)
            loss = ((((z @ W + b_pre) - x_bd) ** 2).sum(1) / xn2).mean() + 0.1 * (
                z.abs().sum(1) / xn2.sqrt()).mean()
            loss.backward()
            return z

        times = {}
        for name, fn in (("sparse", lambda: fused_loss(sae, x_bd, 0.1, 1.0)[0].backward()),
                         ("dense", lambda: fused_loss(sae, x_bd, 0.1, 0.0)[0].backward()),
                         ("plain", plain)):
            best = float("inf")
            for _ in range(repeats):
                sae.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            times[name] = best
        got = density({k: v.detach() for k, v in sae.state_dict().items()}, x_bd)
        rows.append({"target": target, "density": got, **times})
        print(f"  density {got:.4f}: sparse {times['sparse'] * 1e3:7.1f} ms, dense "
              f"{times['dense'] * 1e3:7.1f} ms, plain autograd {times['plain'] * 1e3:7.1f} ms  "
              f"(plain/sparse {times['plain'] / times['sparse']:.2f}x, plain/dense "
              f"{times['plain'] / times['dense']:.2f}x)")
    return {"d_in": d, "latents": d * expansion, "batch": batch,
            "threads": torch.get_num_threads(), "repeats": repeats, "rows": rows,
            "load": os.getloadavg()}


def bench_similarity(s: int, k: int, layers: int, n: int, device: str, ref_layers: int,
                     ref_units: int | None = None, ref_voxels: int | None = None) -> dict:
    g = np.random.default_rng(0)
    units = {f"blocks.{i}": g.random((s, k), dtype=np.float32) for i in range(layers)}
    vox = g.standard_normal((s, n))
    match_units_to_voxels({"w": units["blocks.0"][:, :8]}, vox[:, :8], device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    m = match_units_to_voxels(units, vox, device=device)
    _sync(device)
    ours = time.perf_counter() - t0
    ku, nv = ref_units or k, ref_voxels or n
    sub = {name: a[:, :ku] for name, a in list(units.items())[:ref_layers]}
    t0 = time.perf_counter()
    best = np.full(nv, -np.inf)
    for a in sub.values():  # the baseline holds (k + n)^2 float64 per layer
        r = np.corrcoef(a.T, vox[:, :nv].T)[:ku, ku:]
        best = np.maximum(best, r.max(0))
    ref = time.perf_counter() - t0
    ours_sub = (m if (ku, nv, ref_layers) == (k, n, layers)
                else match_units_to_voxels(sub, vox[:, :nv], device=device))
    max_diff = float(np.abs(best - ours_sub.max_r_ln[:ref_layers].max(0)).max())
    assert max_diff < 1e-4, f"paths disagree by {max_diff}"
    pairs, ref_pairs = layers * k * n, ref_layers * ku * nv
    print(f"Unit-voxel similarity  images={s} layers={layers} units/layer={k} voxels={n} "
          f"device={device}")
    print(f"  cortexalign match     : {pairs / ours:14,.0f} pairs/s ({ours:.2f} s)")
    print(f"  numpy corrcoef        : {ref_pairs / ref:14,.0f} pairs/s ({ref:.2f} s, "
          f"{ref_layers} layer(s) x {ku} units x {nv} voxels); max |diff| {max_diff:.1e}")
    return {"images": s, "layers": layers, "units_per_layer": k, "voxels": n, "device": device,
            "cortexalign_s": ours, "cortexalign_pairs_per_s": pairs / ours,
            "numpy_pairs_per_s": ref_pairs / ref, "numpy_subproblem": [ref_layers, ku, nv],
            "ratio": (pairs / ours) / (ref_pairs / ref), "max_abs_diff": max_diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small CPU-sized problems")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--train-size", type=int, nargs=4, metavar=("TOKENS", "D", "EXPANSION", "BATCH"),
                   help="SAE training size only (skips the similarity), e.g. 200704 768 5 4096")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the training bench")
    p.add_argument("--steady", action="store_true",
                   help="with --train-size: time steady-state training from a shared warm-up on "
                        "planted-sparse tokens instead of a fresh start on Gaussian tokens")
    p.add_argument("--active", type=int, default=0,
                   help="planted atoms per token for --steady (0: 2.5%% of the dictionary)")
    p.add_argument("--sweep", type=int, nargs=3, metavar=("D", "EXPANSION", "BATCH"),
                   help="time one training step's loss + backward at planted densities only")
    p.add_argument("--warm-epochs", type=int, default=4, help="shared warm-up passes for --steady")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep:
        d, expansion, batch = args.sweep
        print(f"one SAE step (loss + backward), relu_tied d={d} latents={d * expansion} "
              f"batch={batch} threads={torch.get_num_threads()} best of {args.repeats}")
        res = {"sweep": bench_step_sweep(d, expansion, batch, [0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                                                               0.3, 0.5], args.repeats)}
    elif args.train_size and args.steady:
        n, d, expansion, batch = args.train_size
        active = args.active or max(1, round(0.025 * expansion * d))
        res = {"steady": bench_steady(n, d, expansion, batch, args.device, args.repeats, active,
                                      args.warm_epochs)}
    elif args.train_size:
        n, d, expansion, batch = args.train_size
        res = {"training": bench_training(n, d, expansion, batch, args.device, args.repeats)}
    elif args.quick:
        res = {"training": bench_training(n=32768, d=64, expansion=16, batch=1024, device=args.device,
                                          repeats=args.repeats),
               "similarity": bench_similarity(s=500, k=1024, layers=2, n=1000, device=args.device,
                                              ref_layers=2)}
    else:
        res = {"training": bench_training(n=2_000_000, d=768, expansion=16, batch=16384,
                                          device=args.device, repeats=args.repeats),
               "similarity": bench_similarity(s=9000, k=12288, layers=12, n=20000,
                                              device=args.device, ref_layers=1, ref_units=2048,
                                              ref_voxels=2000)}
    res["torch"] = torch.__version__
    res["gpu"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
