"""--device and --precision: bf16 autocast keeps every variant's training step finite and the solvers'
arithmetic in float32; runs resume across devices and precisions; CUDA steps where a GPU is present."""

import math

import pytest
import torch

import solvers
from deqslots.training.checkpoint import load_checkpoint
from deqslots.evaluation.metrics import mse_per_pixel
from deqslots.slot_attention.module import VARIANTS
from deqslots.training.config import TrainConfig
from deqslots.training.loop import build_model, train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny(out=None, **kw):
    base = dict(data="shapes", config="cpu-small", resolution=16, num_slots=3, batch_size=4, steps=2, eval_every=2,
                eval_batches=1, checkpoint_every=2, out=str(out), progress=False, lr=1e-3, warmup_steps=0)
    return TrainConfig(**{**base, **kw})


def one_step(variant: str, device: str, precision: str) -> tuple[torch.Tensor, torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model(tiny(variant=variant)).to(device)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(images)
        loss = mse_per_pixel(out["recon"], images).float()
    loss.backward()
    return loss, model, out


def assert_finite_step(loss, model):
    assert math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_training_step_of_every_variant_is_finite_on_cpu(variant):
    loss, model, out = one_step(variant, "cpu", "bf16")
    assert_finite_step(loss, model)
    assert out["slots"].dtype == torch.float32  # the solver state stays float32
    reference, _, _ = one_step(variant, "cpu", "fp32")
    assert loss.item() == pytest.approx(reference.item(), rel=0.05)  # bf16 rounding, not a different model


@pytest.mark.parametrize("forward, backward", [("broyden", solvers.Implicit(tol=None, max_iter=8)),
                                               ("anderson", "onestep"), ("iterate", "unrolled")])
def test_under_autocast_only_the_map_runs_in_bf16(forward, backward):
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 16)
    x = torch.randn(8, 16)

    def f(z):
        return torch.tanh(0.5 * lin(z) + x)

    def f_bf16(z):  # what the solver should see: f under autocast, cast back to the state's dtype
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return f(z).float()

    options = dict(forward=forward, backward=backward, tol=None, max_iter=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, _ = solvers.fixed_point(f, torch.zeros(8, 16), **options)
    z.pow(2).sum().backward()
    grads = [p.grad.clone() for p in lin.parameters()]
    lin.zero_grad()
    expected, _ = solvers.fixed_point(f_bf16, torch.zeros(8, 16), **options)  # solver arithmetic in float32
    expected.pow(2).sum().backward()
    assert z.dtype == torch.float32 and torch.equal(z, expected)
    for got, want in zip(grads, (p.grad for p in lin.parameters())):
        if backward == "unrolled":
            # one autocast region caches one bf16 copy of the weight for all iterations, so its gradient is
            # summed over them in bf16 before the cast back; separate regions sum in float32
            assert torch.allclose(got, want, rtol=2e-2, atol=1e-3)
        else:
            assert torch.equal(got, want)


def test_a_run_resumes_with_another_precision_and_device_setting(tmp_path):
    summary = train(tiny(tmp_path, precision="bf16", device="cpu"))
    assert math.isfinite(summary["mse"])
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["train_config"]["precision"] == "bf16" and saved["device"] == "cpu"
    train(tiny(tmp_path, steps=3, precision="fp32", device="auto", resume=True))  # not refused
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        tiny(tmp_path, precision="fp16")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_training_step_of_every_variant_on_cuda(variant, precision):
    loss, model, out = one_step(variant, "cuda", precision)
    assert_finite_step(loss, model)
    assert out["slots"].dtype == torch.float32 and out["slots"].device.type == "cuda"


@needs_cuda
def test_cuda_run_leaves_a_checkpoint_that_resumes_on_cpu(tmp_path):
    train(tiny(tmp_path, device="cuda", precision="bf16"))
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no map_location needed
    assert all(v.device.type == "cpu" for v in saved["model"].values())
    assert saved["device"].startswith("cuda") and "cuda_rng" in saved
    summary = train(tiny(tmp_path, steps=3, device="cpu", resume=True))
    assert math.isfinite(summary["mse"])
