"""One contract test run over every backend (shape, dtype, device, no NaN, input checks), and
parity of each backend with eager fp32 on the same inputs. CPU runs everywhere; CUDA and
TensorRT parametrisations skip cleanly where absent."""

from __future__ import annotations

import pytest
import torch

from uhr_seg_ros.backends import Backend, create_backend
from uhr_seg_ros.backends.eager import EagerBackend

PATCH = 64  # side of the ``patches`` fixture
MAX_BATCH = 3
#: fp16 backends must agree with eager fp32 on at least this fraction of argmax pixels
FP16_ARGMAX_AGREEMENT = 0.995

BACKEND_CASES = [
    pytest.param(("cpu", "fp32"), id="cpu"),
    pytest.param(("cuda", "fp32"), id="cuda-fp32", marks=pytest.mark.gpu),
    pytest.param(("cuda", "fp16"), id="cuda-fp16", marks=pytest.mark.gpu),
    pytest.param(
        ("tensorrt", "fp32"), id="tensorrt-fp32", marks=[pytest.mark.gpu, pytest.mark.tensorrt]
    ),
    pytest.param(
        ("tensorrt", "fp16"), id="tensorrt-fp16", marks=[pytest.mark.gpu, pytest.mark.tensorrt]
    ),
]


@pytest.fixture(params=BACKEND_CASES)
def backend(request, tiny_model, tmp_path) -> Backend:
    name, precision = request.param
    created = create_backend(
        tiny_model,
        (name,),
        precision=precision,
        max_batch=MAX_BATCH,
        patch_sizes=(PATCH,),
        engine_cache_dir=tmp_path,
    )
    created.warmup(MAX_BATCH, PATCH)
    yield created
    created.close()


@pytest.fixture
def reference(tiny_model, patches) -> torch.Tensor:
    """Eager fp32 logits on CPU: the yardstick every backend is held to."""
    reference_model = type(tiny_model)(tiny_model.config)
    reference_model.load_state_dict(tiny_model.state_dict())
    with torch.inference_mode():
        return reference_model.eval()(patches)


def test_infer_contract(backend, patches):
    batch = patches.to(backend.device, backend.input_dtype)
    for size in (1, MAX_BATCH):
        logits = backend.infer(batch[:size])
        assert logits.shape == (size, backend.num_classes, PATCH, PATCH)
        assert logits.device == backend.device
        assert logits.dtype in (torch.float32, torch.float16)
        assert torch.isfinite(logits).all()
    assert isinstance(backend.external_bytes(), int) and backend.external_bytes() >= 0
    assert backend.name in backend.describe()


def test_infer_accepts_strided_views(backend, patches):
    batch = patches.to(backend.device, backend.input_dtype)
    wide = torch.cat([batch, batch], dim=-1)  # tiles cut out of a larger frame are views
    view = wide[..., PATCH // 2 : PATCH // 2 + PATCH]
    assert not view.is_contiguous()
    torch.testing.assert_close(
        backend.infer(view).float(), backend.infer(view.contiguous()).float().clone()
    )


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 3, 64, 32), r"\(B, 3, P, P\)"),
        ((2, 4, 64, 64), r"\(B, 3, P, P\)"),
        ((2, 3, 48, 48), "multiple of 32"),
        ((MAX_BATCH + 1, 3, 64, 64), "outside 1..3"),
    ],
)
def test_infer_rejects_contract_violations_with_a_fix(backend, shape, message):
    with pytest.raises(ValueError, match=message):
        backend.infer(torch.zeros(shape, device=backend.device, dtype=backend.input_dtype))


def test_logits_match_eager_fp32(backend, patches, reference):
    logits = backend.infer(patches.to(backend.device, backend.input_dtype)).float().cpu()
    if getattr(backend, "precision", "fp32") == "fp32":
        torch.testing.assert_close(logits, reference, rtol=1e-3, atol=1e-3)
    else:
        agreement = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        assert agreement >= FP16_ARGMAX_AGREEMENT


def test_cpu_backend_runs_fp32_even_when_fp16_is_asked(tiny_model):
    backend = EagerBackend(tiny_model, "cpu", precision="fp16")
    assert backend.precision == "fp32" and backend.input_dtype == torch.float32


def test_patch_sizes_restrict_what_a_backend_accepts(tiny_model):
    backend = EagerBackend(tiny_model, "cpu", max_batch=2)
    backend.patch_sizes = (64,)  # what a TensorRT backend built for 64 only declares
    with pytest.raises(ValueError, match=r"built for patch sides \(64,\), got 96"):
        backend.infer(torch.zeros(1, 3, 96, 96))


@pytest.mark.gpu
def test_cuda_graph_replays_every_smaller_batch_like_eager(tiny_model, patches, reference):
    backend = EagerBackend(
        tiny_model, "cuda", precision="fp32", max_batch=MAX_BATCH, cuda_graphs=True
    )
    backend.warmup(MAX_BATCH, PATCH)
    assert "CUDA graphs" in backend.describe()
    batch = patches.cuda()
    for size in (MAX_BATCH, 1, 2):
        logits = backend.infer(batch[:size]).cpu()
        torch.testing.assert_close(logits, reference[:size], rtol=1e-3, atol=1e-3)


def test_batch_norm_folding_is_within_its_tolerance(tiny_model, patches):
    """Every BN of the network is folded (none left running), the caller's model keeps its BNs,
    and the logits stay within FOLD_TOLERANCE of the unfolded network. BN statistics are made
    non-trivial first, so that a wrong fold (scale or shift) cannot pass."""
    from torch import nn

    from uhr_seg_ros.backends.eager import FOLD_TOLERANCE, fold_batch_norm

    generator = torch.Generator().manual_seed(3)
    model = type(tiny_model)(tiny_model.config)
    model.load_state_dict(tiny_model.state_dict())
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.normal_(0.0, 0.3, generator=generator)
            bn.running_var.uniform_(0.5, 2.0, generator=generator)
            bn.weight.data.uniform_(0.5, 1.5, generator=generator)
            bn.bias.data.normal_(0.0, 0.2, generator=generator)
    model.eval()
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded, count = fold_batch_norm(model)
    assert count == norms > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == norms
    backend = EagerBackend(model, "cpu", max_batch=MAX_BATCH)
    assert backend.folded_batch_norms == norms
    with torch.inference_mode():
        expected = model(patches)
        unfolded = EagerBackend(model, "cpu", max_batch=MAX_BATCH, fold_bn=False).infer(patches)
        logits = backend.infer(patches)
    scale = expected.abs().max().item()
    assert (logits - expected).abs().max().item() <= FOLD_TOLERANCE * scale
    torch.testing.assert_close(unfolded, expected)
