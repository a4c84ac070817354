"""Per-class logit offsets: the fit finds a prior shift, the model carries it, the CLI writes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from uhr_seg_ros.cli import main as cli_main
from uhr_seg_ros.evaluation.class_bias import (
    ValidationLogits,
    _counted,
    _miou,
    apply_class_bias,
    fit_class_bias,
)
from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint, save_checkpoint


def _shifted_logits(shift: float) -> ValidationLogits:
    """Noisy logits that favour the true class, with class 1 pushed down by ``shift``."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, 32, 32), generator=g, dtype=torch.uint8)
    logits = torch.randn(4, 3, 32, 32, generator=g)
    logits += 2.0 * torch.nn.functional.one_hot(labels.long(), 3).permute(0, 3, 1, 2)
    logits[:, 1] -= shift
    labels[:, :2] = 255  # ignored pixels never count
    return ValidationLogits(logits.half(), labels)


def test_fit_undoes_a_prior_shift_and_never_scores_worse():
    data = _shifted_logits(1.5)
    offsets, before, after = fit_class_bias(data)
    assert after > before + 0.05
    assert offsets[1] - offsets[[0, 2]].mean() == pytest.approx(1.5, abs=0.3)
    assert abs(offsets.sum()) < 1e-6  # centred
    logits, labels = _counted(data)
    assert _miou(logits, labels, torch.as_tensor(offsets, dtype=torch.float32)) == pytest.approx(
        after
    )
    calibrated = _shifted_logits(0.0)
    _, before, after = fit_class_bias(calibrated)
    assert after >= before


def test_apply_class_bias_accumulates_in_the_model_meta(tiny_model):
    tiny_model.meta = {}
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        before = tiny_model(x)
    apply_class_bias(tiny_model, [0.2, -0.1, -0.1])
    apply_class_bias(tiny_model, [0.1, 0.0, -0.1])
    with torch.inference_mode():
        after = tiny_model(x)
    assert tiny_model.meta["class_bias"] == pytest.approx([0.3, -0.1, -0.2])
    torch.testing.assert_close(
        after - before, torch.tensor([0.3, -0.1, -0.2]).view(1, 3, 1, 1).expand_as(after)
    )
    with pytest.raises(ValueError, match="3 classes, got 2 offsets"):
        apply_class_bias(tiny_model, [0.0, 0.0])


def test_cli_writes_a_corrected_loadable_model(tmp_path, capsys):
    torch.manual_seed(0)
    names = ("urban", "agriculture", "rangeland", "forest", "water", "barren")  # synthetic's
    model = build_model(SGHRQConfig.tiny(num_classes=6, class_names=names))
    model.prepare_for_inference()
    source = save_checkpoint(tmp_path / "m.pt", model, half=True, inference_only=True)
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"preset": "tiny"},
                "data": {
                    "train": ["synthetic:2@96"],
                    "val": ["synthetic:3@96"],
                    "crop_size": 64,
                    "val_crop_size": 64,
                    "workers": 0,
                },
            }
        )
    )
    out = tmp_path / "calibrated.pt"
    args = ["fit-class-bias", "--model", str(source), "--config", str(config)]
    assert cli_main([*args, "--out", str(out), "--val-crops", "4"]) == 0
    printed = capsys.readouterr().out
    assert "validation mIoU" in printed and "offsets:" in printed
    corrected = load_checkpoint(out)
    fit = corrected.meta["class_bias_fit"]
    assert fit["crops"] == 4 and fit["val_miou_after"] >= fit["val_miou_before"]
    original = load_checkpoint(source)
    delta = corrected.output_classifier().bias - original.output_classifier().bias
    np.testing.assert_allclose(delta.numpy(), corrected.meta["class_bias"], atol=2e-3)  # fp16
    assert cli_main([*args, "--out", str(source)]) == 1  # never overwrites its input
