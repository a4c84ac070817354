"""The family contract, checked for every registered model family: a new family passes or fails
these tests without any test being written for it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from uhr_seg_ros.backends.export import export_program
from uhr_seg_ros.model import (
    CheckpointError,
    SegmentationModel,
    build_model,
    get_family,
    load_checkpoint,
    registered_families,
    save_checkpoint,
)
from uhr_seg_ros.model.checkpoint import read_checkpoint
from uhr_seg_ros.training.losses import build_loss

FAMILIES = registered_families()
PATCH = 64


def _model(family: str, num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(get_family(family).preset("tiny", num_classes))


def _train_crop(model: torch.nn.Module) -> int:
    """Side of a training crop whose predicted window is PATCH."""
    context = model.context
    return PATCH if context is None else context.neighbourhood_side(PATCH)


def test_both_networks_are_registered():
    assert {"sghrq", "scpseg"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_inference_graph_shape_dtype_and_finite(family):
    model = _model(family).eval()
    assert isinstance(model, SegmentationModel)
    assert model.family == family
    x = torch.rand(2, 3, PATCH, PATCH, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        logits = model(x)
    assert logits.shape == (2, 3, PATCH, PATCH)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="multiple of"):
        model(torch.zeros(1, 3, PATCH + 8, PATCH + 8))


@pytest.mark.parametrize("family", FAMILIES)
def test_an_offset_on_the_output_classifier_bias_shifts_every_logit(family):
    """What fit-class-bias relies on: nothing after the classifier but a linear upsampling."""
    model = _model(family).eval()
    x = torch.rand(1, 3, PATCH, PATCH, generator=torch.Generator().manual_seed(2)) * 255
    offsets = torch.tensor([0.5, -1.0, 0.25])
    with torch.inference_mode():
        before = model(x)
        model.output_classifier().bias += offsets
        after = model(x)
    torch.testing.assert_close(after - before, offsets.view(1, 3, 1, 1).expand_as(after))


@pytest.mark.parametrize("family", FAMILIES)
def test_training_outputs_feed_the_family_loss_and_reach_every_trainable_weight(family):
    model = _model(family).train()
    side = _train_crop(model)
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(2)) * 255
    labels = torch.randint(0, 3, (2, side, side), generator=torch.Generator().manual_seed(3))
    loss_module = build_loss(family)
    total, parts = loss_module(model.forward_train(images, labels), labels)
    assert set(parts) == set(loss_module.terms)
    assert torch.isfinite(total)
    total.backward()
    heads = [p for p in model.train_heads.parameters()]
    assert heads and all(p.grad is not None for p in heads)  # the training-only heads learn
    logits, covered = model.segment_crop(images, labels)
    assert logits.shape[-2:] == covered.shape[-2:] == (PATCH, PATCH)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_keeps_the_family_and_freezes_the_inference_graph(family, tmp_path: Path):
    model = _model(family).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, inference_only=True)
    assert read_checkpoint(path)["family"] == family
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.train_heads is None and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, PATCH, PATCH) * 255
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_export_holds_no_training_only_weights(family, tmp_path: Path):
    model = load_checkpoint(save_checkpoint(tmp_path / "m.pt", _model(family)))  # as deployed
    program = export_program(model, PATCH, max_batch=2)
    exported = set(program.state_dict)
    assert exported and not any(k.startswith("train_heads.") for k in exported)
    x = torch.rand(2, 3, PATCH, PATCH) * 255
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export_runs_in_onnx_runtime(family, tmp_path: Path):
    pytest.importorskip("onnx", reason="needs the onnx extra")
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (onnx extra)")
    from uhr_seg_ros.backends.export import export_onnx

    model = load_checkpoint(save_checkpoint(tmp_path / "m.pt", _model(family)))
    path = export_onnx(model, tmp_path / f"{family}.onnx", PATCH, max_batch=2)
    x = torch.rand(2, 3, PATCH, PATCH) * 255
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.inference_mode():
        torch.testing.assert_close(torch.from_numpy(out), model(x), atol=1e-3, rtol=1e-3)


def test_version_1_files_without_a_family_load_as_sghrq(tmp_path: Path):
    model = _model("sghrq")
    path = save_checkpoint(tmp_path / "v1.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["family"]
    payload["version"] = 1
    torch.save(payload, path)
    assert load_checkpoint(path).family == "sghrq"


def test_an_unknown_family_is_a_clear_checkpoint_error(tmp_path: Path):
    path = save_checkpoint(tmp_path / "m.pt", _model("scpseg"))
    payload = torch.load(path, weights_only=True)
    payload["family"] = "segformer"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown model family 'segformer'"):
        load_checkpoint(path)


def test_a_config_of_one_family_is_refused_by_the_other(tmp_path: Path):
    path = save_checkpoint(tmp_path / "m.pt", _model("scpseg"))
    payload = torch.load(path, weights_only=True)
    payload["family"] = "sghrq"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_checkpoint(path)


def test_build_model_refuses_a_plain_dict():
    with pytest.raises(TypeError, match="registered model family"):
        build_model(dataclasses.asdict(get_family("scpseg").preset("tiny", 3)))
