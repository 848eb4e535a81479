"""Spiking benchmarks: our multi-step LIF and a spiking-transformer training step vs spikingjelly.

    python benchmarks/bench_spiking.py --quick            # small sizes, a few seconds
    python benchmarks/bench_spiking.py                    # full: LIF (T=4, 64 x 24,576), hst_tiny step
    python benchmarks/bench_spiking.py --device cuda      # on a GPU (our 'auto' picks the Triton kernel)
    python benchmarks/bench_spiking.py --device cuda --model hst_4_384 --batch 64 --json s.json

Peers: spikingjelly (``pip install spikingjelly``) ``LIFNode(tau=2., v_reset=0., step_mode='m',
surrogate_function=Sigmoid())``; spikingjelly 2.0 picks its own kernel per device. The
training-step comparison builds the same ``SpikingTransformer`` and swaps every neuron for
a spikingjelly LIFNode; both run the package's ``TrainStep`` (fp32, AdamW). Times are medians
of ``--repeats`` after ``--warmup`` runs.

On CUDA each side is also timed replayed from a CUDA graph (rows ``[cuda-graph]``): the LIF
forward + backward captured as it is, the training step through ``TrainStep(cuda_graph=True)``
(capturable AdamW). Graphs remove the launch overhead that bounds both sides' eager times, so
those rows compare the kernels. A side that cannot be captured gets its error instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cortexalign.spiking.models import SNN_MODELS, create_snn
from cortexalign.spiking.neurons import MultiStepLIF, lif_multistep
from cortexalign.spiking.step import TrainStep, snn_optimizer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class SJLIF(MultiStepLIF):
    """A ``MultiStepLIF`` slot filled by spikingjelly's multi-step LIFNode (same parameters)."""

    def __init__(self, like: MultiStepLIF):
        super().__init__(like.tau, like.v_threshold, like.v_reset)
        from spikingjelly.activation_based import neuron, surrogate

        self.node = neuron.LIFNode(tau=like.tau, v_threshold=like.v_threshold, v_reset=like.v_reset,
                                   surrogate_function=surrogate.Sigmoid(), step_mode="m")

    def reset(self):
        self.node.reset()

    def forward(self, x_T):
        return self.node(x_T)


def with_spikingjelly_neurons(model: torch.nn.Module) -> torch.nn.Module:
    for name, child in list(model.named_children()):
        if isinstance(child, MultiStepLIF):
            setattr(model, name, SJLIF(child))
        else:
            with_spikingjelly_neurons(child)
    return model


def graphed(fn, warmup=3):
    """``fn`` captured into a CUDA graph (after ``warmup`` runs on a side stream): its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _time_or_error(make, device, warmup, repeats):
    """Median time of the callable ``make()`` builds, or the error that stopped it (a string)."""
    try:
        return _time(make(), device, warmup, repeats)
    except Exception as e:  # noqa: BLE001 - a peer that cannot be captured is a result to report
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def bench_lif(shape, device, warmup, repeats):
    """Two sections, each ours vs spikingjelly on the same input:

    - ``loss``: ``(spikes * w).sum().backward()`` into a leaf ``x`` (the neuron inside a model:
      the loss, its backward and the gradient accumulation are timed too, on both sides);
    - ``lif``: the neuron alone, ``torch.autograd.grad(spikes, x, g)`` for a fixed output gradient
      ``g`` (LIF forward + backward and nothing else, what issue 9's target names).
    """
    from spikingjelly.activation_based import neuron, surrogate

    x = torch.randn(shape, device=device).mul_(1.5).add_(0.8).requires_grad_()
    w, g = torch.randn(shape, device=device), torch.randn(shape, device=device)
    node = neuron.LIFNode(tau=2.0, v_reset=0.0, step_mode="m", surrogate_function=surrogate.Sigmoid())
    backends = ["bptt", "reference"] + (["auto"] if device.type == "cuda" else [])

    def ours_loss(b="auto"):
        (lif_multistep(x, backend=b)[0] * w).sum().backward()

    def ours_lif(b="auto"):
        torch.autograd.grad(lif_multistep(x, backend=b)[0], x, g)

    def sj_loss():
        node.reset()
        (node(x) * w).sum().backward()
        node.reset()  # the state would keep this step's autograd graph alive into the next

    def sj_lif():
        node.reset()
        torch.autograd.grad(node(x), x, g)
        node.reset()

    sections = {}
    for section, ours, sj in (("loss", ours_loss, sj_loss), ("lif", ours_lif, sj_lif)):
        rows = {f"ours[{b}]": _time(lambda b=b, f=ours: f(b), device, warmup, repeats)
                for b in backends}
        rows["spikingjelly"] = _time(sj, device, warmup, repeats)
        if device.type == "cuda":
            for label, fn in (("ours[auto, cuda-graph]", ours), ("spikingjelly[cuda-graph]", sj)):
                x.grad = None  # each side starts from no accumulated gradient
                rows[label] = _time_or_error(lambda fn=fn: graphed(fn), device, warmup, repeats)
        sections[section] = rows
    return sections


def _step(model_name, batch, size, device, neurons, cuda_graph):
    """A zero-argument training step of ``model_name`` on one fixed random batch."""
    torch.manual_seed(0)
    model = create_snn(model_name).to(device).train()
    if neurons == "spikingjelly":
        with_spikingjelly_neurons(model)
    opt = snn_optimizer(model, 1e-3, 0.0, capturable=cuda_graph)
    step = TrainStep(model, opt, cuda_graph=cuda_graph)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for _ in range(step.warmup + 1 if cuda_graph else 0):
        step(x, y, 1e-3)  # the eager warm-up steps and the capture: only replays are timed
    return lambda: step(x, y, 1e-3)


def bench_train_step(model_name, batch, size, device, warmup, repeats):
    rows = {}
    for neurons in ("ours", "spikingjelly"):
        rows[neurons] = _time(_step(model_name, batch, size, device, neurons, False),
                              device, warmup, repeats)
        if device.type == "cuda":
            rows[f"{neurons}[cuda-graph]"] = _time_or_error(
                lambda n=neurons: _step(model_name, batch, size, device, n, True),
                device, warmup, repeats)
    return rows


def _print_rows(rows, peer):
    """Each row's time and its speed-up over the eager peer (and over the graphed peer for
    graphed rows, the like-for-like comparison)."""
    graphed_peer = f"{peer}[cuda-graph]"
    for k, v in rows.items():
        if isinstance(v, str):
            print(f"  {k:26s} failed: {v}")
            continue
        ratios = [f"{p}/this = {rows[p] / v:5.2f}" for p in (peer, graphed_peer)
                  if isinstance(rows.get(p), float) and (p == peer or "cuda-graph" in k)]
        print(f"  {k:26s} {v * 1e3:9.3f} ms   " + "   ".join(ratios))


def _ms(rows):
    return {k: v if isinstance(v, str) else v * 1e3 for k, v in rows.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--model", default="hst_tiny", help="registered spiking model of the step benchmark")
    p.add_argument("--batch", type=int, default=None, help="images per training step")
    p.add_argument("--json", help="write the results to this file")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    repeats = a.repeats or (3 if a.quick else 10)
    lif_shape = (4, 8, 4096) if a.quick else (4, 64, 24576)
    batch, size = (4, 16) if a.quick else (32, 32)
    batch = a.batch or batch
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    lif = bench_lif(lif_shape, device, a.warmup, repeats)
    print(f"\nmulti-step LIF forward+backward, x {lif_shape}, through a loss (s * w).sum():")
    _print_rows(lif["loss"], "spikingjelly")
    print("\nmulti-step LIF forward+backward alone (autograd.grad with a given output gradient):")
    _print_rows(lif["lif"], "spikingjelly")
    step = bench_train_step(a.model, batch, size, device, a.warmup, repeats)
    print(f"\ntraining step {a.model}, batch {batch}, {size} px, T={SNN_MODELS.get(a.model).time_steps}:")
    _print_rows(step, "spikingjelly")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": str(device), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                       "threads": torch.get_num_threads(), "lif_shape": list(lif_shape),
                       "lif_ms": _ms(lif["loss"]), "lif_alone_ms": _ms(lif["lif"]), "step_model": a.model,
                       "step_batch": batch, "step_size": size, "step_ms": _ms(step)}, f, indent=1)


if __name__ == "__main__":
    main()
