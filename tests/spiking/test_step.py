"""TrainStep: the eager step equals the hand-written one; the CUDA-graph step equals the eager
step over captured replays (GPU only); bad settings raise before anything runs."""

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError
from cortexalign.spiking.models import create_snn
from cortexalign.spiking.step import TrainStep, snn_optimizer
from cortexalign.spiking.train import TrainConfig, train_snn

FAMILIES = ["hst_tiny", "spiliformer_tiny", "tdformer_tiny"]
LRS = [3e-3, 2e-3, 1e-3, 5e-4, 2.5e-4, 1e-4]  # a decaying schedule: replays must follow it


def _batches(n, device="cpu", batch=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=g).to(device),
             torch.randint(0, 10, (batch,), generator=g).to(device)) for _ in range(n)]


def _model(name, device="cpu"):
    torch.manual_seed(0)
    return create_snn(name).to(device).train()


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", FAMILIES)
def test_eager_step_equals_the_hand_written_step(name):
    a, b = _model(name), _model(name)
    opt_a = torch.optim.AdamW(a.parameters(), lr=LRS[0], weight_decay=0.06)
    step = TrainStep(b, snn_optimizer(b, LRS[0], 0.06))
    for (x, y), lr in zip(_batches(3), LRS, strict=False):
        loss_a, logits_a = a.loss(x, y)  # the loop train_snn ran before TrainStep existed
        opt_a.zero_grad(set_to_none=True)
        loss_a.backward()
        for g in opt_a.param_groups:
            g["lr"] = lr
        opt_a.step()
        out = step(x, y, lr)
        assert out.applied
        assert torch.equal(out.loss, loss_a) and torch.equal(out.logits, logits_a)
        # detached: holding the outputs must not keep this step's autograd graph (and the
        # parameters' AccumulateGrad nodes) alive into the next step or a graph capture
        assert out.loss.grad_fn is None and out.logits.grad_fn is None
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_eager_step_skips_the_update_of_a_non_finite_loss():
    model = _model("hst_tiny")
    before = _state(model)
    orig = model.loss
    model.loss = lambda x, y: (orig(x, y)[0] * float("nan"), orig(x, y)[1])
    out = TrainStep(model, snn_optimizer(model, 1e-3, 0.06))(*_batches(1)[0], 1e-3)
    assert not out.applied and not torch.isfinite(out.loss)
    for k, v in _state(model).items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, before[k]), k  # no weight moved


def test_cuda_graph_needs_cuda(tmp_path):
    model = _model("hst_tiny")
    with pytest.raises(InputError, match="cuda_graph"):
        TrainStep(model, snn_optimizer(model, 1e-3, 0.06), cuda_graph=True)
    with pytest.raises(InputError, match="capturable"):
        snn_optimizer(model, 1e-3, 0.06, capturable=True)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, train_images=rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8),
             train_labels=np.arange(8) % 2, test_images=rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
             test_labels=np.arange(4) % 2)
    ck = tmp_path / "ck"
    with pytest.raises(InputError, match="cuda_graph"):
        train_snn(TrainConfig(data=data, checkpoint_dir=ck, device="cpu", cuda_graph=True,
                              progress=False, batch_size=4))
    assert not ck.exists()  # refused before anything was written


# --------------------------------------------------------------------------- GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def deterministic():
    old = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.usefixtures("deterministic")
@pytest.mark.gpu
@needs_cuda
def test_graph_replays_equal_eager_steps_on_gpu(name, amp):
    batches = _batches(len(LRS), "cuda")
    runs = {}
    for graph in (False, True):
        model = _model(name, "cuda")
        step = TrainStep(model, snn_optimizer(model, LRS[0], 0.06, capturable=True), amp=amp,
                         cuda_graph=graph, warmup=2)
        losses = [float(step(x, y, lr).loss) for (x, y), lr in zip(batches, LRS, strict=True)]
        assert step.captured == graph  # steps 3-6 ran from the graph
        runs[graph] = losses, _state(model)
    tol = dict(atol=1e-5, rtol=1e-4) if not amp else dict(atol=2e-3, rtol=2e-2)
    torch.testing.assert_close(torch.tensor(runs[True][0]), torch.tensor(runs[False][0]), **tol)
    for k, v in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][k].float(), v.float(), **tol, msg=k)


@pytest.mark.gpu
@needs_cuda
def test_graph_step_rejects_another_batch_shape_on_gpu():
    model = _model("hst_tiny", "cuda")
    step = TrainStep(model, snn_optimizer(model, 1e-3, 0.06, capturable=True), cuda_graph=True,
                     warmup=1)
    for x, y in _batches(2, "cuda"):
        step(x, y, 1e-3)
    x, y = _batches(1, "cuda", batch=3)[0]
    with pytest.raises(InputError, match="captured"):
        step(x, y, 1e-3)
    x, y = _batches(1, "cuda")[0]
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="finite"):
        step(x, y, 1e-3)
    with pytest.raises(InputError, match="optimizer"):
        TrainStep(model, torch.optim.AdamW(model.parameters()), cuda_graph=True)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("deterministic")
def test_train_snn_with_cuda_graph_equals_eager_and_resumes_on_gpu(tmp_path):
    from safetensors.torch import load_file

    from cortexalign.spiking._checkpoint import list_checkpoints

    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, train_images=rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8),
             train_labels=np.arange(24) % 2, test_images=rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8),
             test_labels=np.arange(8) % 2)

    def run(ck, graph, **kw):  # 3 steps per epoch, 2 epochs: steps 4-6 are replays
        return train_snn(TrainConfig(data=data, checkpoint_dir=ck, device="cuda", batch_size=8,
                                     epochs=2, amp=False, cuda_graph=graph, progress=False,
                                     lr=3e-3, **kw))

    eager, graph = run(tmp_path / "eager", False), run(tmp_path / "graph", True)
    assert eager.steps == graph.steps == 6
    run(tmp_path / "resumed", True, checkpoint_every=1, keep_last=10)
    for ck in list_checkpoints(tmp_path / "resumed")[2:]:  # as if killed after step 2
        ck.with_suffix(".json").unlink()
    resumed = run(tmp_path / "resumed", True)
    a, b, c = (load_file(str(r.last_checkpoint)) for r in (eager, graph, resumed))
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        torch.testing.assert_close(b[k].float(), a[k].float(), atol=1e-5, rtol=1e-4, msg=k)
        torch.testing.assert_close(c[k].float(), b[k].float(), atol=1e-5, rtol=1e-4, msg=k)
