import pytest
import torch

from uhr_seg_ros.model import SGHRQ, SGHRQConfig, build_model


@pytest.mark.parametrize("height, width", [(32, 32), (64, 64), (96, 160), (128, 64)])
def test_logits_match_patch_size(tiny_model, height, width):
    x = torch.rand(2, 3, height, width) * 255
    with torch.no_grad():
        logits = tiny_model(x)
    assert logits.shape == (2, 3, height, width)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_forward_train_returns_every_head_at_its_stride(patches):
    model = build_model(SGHRQConfig.tiny(num_classes=4)).train()
    out = model.forward_train(patches, torch.randint(0, 4, (2, 64, 64)))
    expected = {
        "logits": (2, 4, 64, 64),
        "aspp": (2, 4, 2, 2),
        "aux8": (2, 4, 8, 8),
        "aux16": (2, 4, 4, 4),
        "aux16_m": (2, 4, 4, 4),
        "semantic_features": (2, 16, 2, 2),
        "fcn": (2, 4, 2, 2),
        "sr": (2, 3, 32, 32),
        "sr_target": (2, 3, 32, 32),
        "affinity_shallow": (2, 8, 2, 2),
        "affinity_semantic": (2, 8, 2, 2),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    out["logits"].sum().backward()
    assert model.query.encodings[0].frequencies.grad is not None


def test_forward_is_the_training_logits_without_training_heads(tiny_model, patches):
    calls = []
    tiny_model.train_heads.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        logits = tiny_model(patches)
        assert calls == []
        train_logits = tiny_model.forward_train(patches)["logits"]
    assert calls == [1]
    torch.testing.assert_close(logits, train_logits)
    assert not any(k.startswith("train_heads.") for k in tiny_model.inference_state_dict())


def test_normalisation_is_inside_the_network(tiny_model):
    """A patch equal to the mean colour becomes zeros after normalisation."""
    mean = torch.tensor(tiny_model.config.mean).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    seen = {}
    tiny_model.pyramid.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
    with torch.no_grad():
        tiny_model(mean.clone())
    assert seen["x"].abs().max() < 1e-5


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 4, 64, 64), r"\(B, 3, H, W\)"),
        ((3, 64, 64), r"\(B, 3, H, W\)"),
        ((1, 3, 64, 70), "multiple of 32"),
    ],
)
def test_bad_input_gets_an_actionable_error(tiny_model, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(torch.zeros(shape))


def test_integer_input_is_refused(tiny_model):
    with pytest.raises(ValueError, match="float"):
        tiny_model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_size_divisor_and_lite_budget():
    assert SGHRQ.size_divisor == 32
    counts = build_model(SGHRQConfig.lite()).parameter_counts()
    assert 2_000_000 < counts["inference"] <= 5_000_000
    assert 0 < counts["training_heads"] < counts["inference"] // 10


def test_reduced_precision_autocast_keeps_the_graph_working(tiny_model, patches):
    """Coordinates stay fp32 inside; the concat takes the features' dtype (bf16 on CPU here,
    fp16 on CUDA)."""
    with torch.no_grad():
        reference = tiny_model(patches)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_model(patches)
    assert low.shape == reference.shape and torch.isfinite(low).all()
    assert (low.float().argmax(1) == reference.argmax(1)).float().mean() > 0.8
