import dataclasses

import pytest
import torch
import torch.nn.functional as F

from uhr_seg_ros.model import SGHRQConfig, build_model
from uhr_seg_ros.training.losses import (
    LossWeights,
    SGHRQLoss,
    affinity_l1,
    lovasz_softmax,
    segmentation_ce,
)


def test_ce_ignores_255_and_resizes_logits():
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, :4] = 255
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    keep = labels != 255
    expected = F.cross_entropy(up.permute(0, 2, 3, 1)[keep], labels[keep])
    torch.testing.assert_close(segmentation_ce(logits, labels), expected)


def test_ce_of_a_fully_ignored_batch_is_zero_not_nan():
    loss = segmentation_ce(torch.randn(1, 3, 4, 4, requires_grad=True), torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0


def test_affinity_compares_pixel_similarity_not_features():
    x = torch.randn(2, 8, 3, 3)
    assert affinity_l1(x, x).item() < 1e-6
    assert affinity_l1(x, 5.0 * x).item() < 1e-6  # scale-invariant (cosine similarities)
    assert affinity_l1(x, torch.randn(2, 8, 3, 3)).item() > 0.05


def test_total_is_the_weighted_sum_of_the_terms():
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(num_classes=3))
    x, labels = torch.rand(2, 3, 64, 64) * 255, torch.randint(0, 3, (2, 64, 64))
    outputs = model.forward_train(x)
    weights = LossWeights(aspp=0.5, sr=0.0)
    total, parts = SGHRQLoss(weights)(outputs, labels)
    assert set(parts) == {
        *("logits", "aspp", "aux8", "aux16", "aux16_m", "fcn", "sr", "affinity", "lovasz")
    }
    assert parts["lovasz"].item() == 0.0  # off by default: not computed
    expected = sum(getattr(weights, name) * value for name, value in parts.items())
    torch.testing.assert_close(total.detach(), expected)
    assert dataclasses.asdict(LossWeights()) == {
        "logits": 1.0,
        "aspp": 1.0,
        "aux8": 1.0,
        "aux16": 1.0,
        "aux16_m": 1.0,
        "fcn": 0.4,
        "sr": 0.1,
        "affinity": 1.0,
        "lovasz": 0.0,
        "class_weights": (),
    }


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="sr"):
        LossWeights(sr=-1.0)


def test_class_weights_raise_the_rare_class_share_of_the_ce():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0] = 2.0  # confident class 0 everywhere
    labels = torch.tensor([[[0, 0, 0, 1]]])  # class 1 is rare and wrong
    plain = segmentation_ce(logits, labels)
    weighted = segmentation_ce(logits, labels, torch.tensor([1.0, 3.0]))
    per_pixel = F.cross_entropy(logits, labels, reduction="none").flatten()
    torch.testing.assert_close(plain, per_pixel.mean())
    torch.testing.assert_close(weighted, (per_pixel[:3].sum() + 3 * per_pixel[3]) / 6)
    assert weighted > plain
    uniform = segmentation_ce(logits, labels, torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(uniform, plain)
    with pytest.raises(ValueError, match="class_weights"):
        LossWeights(class_weights=(1.0, 0.0))
    assert LossWeights(class_weights=None).class_weights == ()  # YAML `class_weights: null`


def test_lovasz_of_a_hard_prediction_is_one_minus_the_mean_iou_of_the_present_classes():
    # On one-hot probabilities the Lovasz extension equals the Jaccard loss itself.
    labels = torch.tensor([[[0, 0, 0, 1], [1, 1, 255, 255]]])  # class 2 absent
    predicted = torch.tensor([[[0, 0, 1, 1], [1, 2, 0, 2]]])  # last two pixels ignored
    logits = 60.0 * F.one_hot(predicted, 3).permute(0, 3, 1, 2).float()
    iou_0 = 2 / 3  # predicted {0,1}, true {0,1,2}
    iou_1 = 2 / 4  # predicted {2,3,4}, true {3,4,5}
    expected = 1.0 - (iou_0 + iou_1) / 2
    torch.testing.assert_close(lovasz_softmax(logits, labels), torch.tensor(expected))
    perfect = 60.0 * F.one_hot(labels.clamp_max(2), 3).permute(0, 3, 1, 2).float()
    assert lovasz_softmax(perfect, labels).item() < 1e-6


def test_lovasz_is_differentiable_and_zero_on_a_fully_ignored_batch():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    loss = lovasz_softmax(logits, labels)  # logits resized to the labels
    loss.backward()
    assert 0 < loss.item() < 1 and logits.grad is not None and logits.grad.abs().sum() > 0
    assert lovasz_softmax(logits, torch.full((2, 8, 8), 255)).item() == 0.0


def test_lovasz_weight_adds_the_term_to_the_total():
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(num_classes=3))
    x, labels = torch.rand(2, 3, 64, 64) * 255, torch.randint(0, 3, (2, 64, 64))
    outputs = model.forward_train(x)
    off, _ = SGHRQLoss(LossWeights())(outputs, labels)
    on, parts = SGHRQLoss(LossWeights(lovasz=2.0))(outputs, labels)
    torch.testing.assert_close(parts["lovasz"], lovasz_softmax(outputs["logits"], labels).detach())
    torch.testing.assert_close(on, off + 2.0 * parts["lovasz"])
