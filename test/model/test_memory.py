import math

import numpy as np
import pytest
import torch

from uhr_seg_ros.model.memory import MemoryBank


def _hand_write(
    old: np.ndarray, feats: np.ndarray, labels: np.ndarray, momentum: float, initialised: np.ndarray
) -> np.ndarray:
    """The paper's rule, pixel by pixel, in float64."""
    new = old.copy()
    for c in range(old.shape[0]):
        pix = feats[labels == c]
        if len(pix) == 0:
            continue
        if not initialised[c]:
            new[c] = pix.mean(axis=0)
            continue
        cos = pix @ old[c] / (np.linalg.norm(pix, axis=1) * np.linalg.norm(old[c]))
        weights = (1 - cos) / (1 - cos).sum()
        new[c] = momentum * old[c] + (1 - momentum) * (weights[:, None] * pix).sum(axis=0)
    return new


def test_write_rule_matches_a_hand_computation():
    bank = MemoryBank(num_classes=3, dim=2, feat_channels=4, momentum=0.9)
    # One image, 2x2 feature cells of width 2; class 2 absent, one cell ignored (255).
    feats = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]], [[0.0, 1.0], [1.0, -1.0]]]])  # (1, D=2, 2, 2)
    labels = torch.tensor([[[0, 0], [1, 255]]])
    flat_feats = feats[0].permute(1, 2, 0).reshape(-1, 2).double().numpy()
    flat_labels = labels.reshape(-1).numpy()

    bank.write(feats, labels)  # first write: the class mean
    expected = _hand_write(np.zeros((3, 2)), flat_feats, flat_labels, 0.9, np.zeros(3, bool))
    np.testing.assert_allclose(bank.prototypes.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(expected[0], [1.5, 0.5])  # mean of (1, 0) and (2, 1)
    assert bank.initialised.tolist() == [True, True, False]

    feats2 = torch.tensor([[[[2.0, -1.0], [4.0, 0.5]], [[1.0, 3.0], [1.0, 2.0]]]])
    labels2 = torch.tensor([[[0, 1], [1, 2]]])
    before = bank.prototypes.double().numpy()
    bank.write(feats2, labels2)  # momentum update for 0 and 1, first write for 2
    expected2 = _hand_write(
        before,
        feats2[0].permute(1, 2, 0).reshape(-1, 2).double().numpy(),
        labels2.reshape(-1).numpy(),
        0.9,
        np.array([True, True, False]),
    )
    np.testing.assert_allclose(bank.prototypes.numpy(), expected2, atol=1e-6)
    # class 0 saw one pixel: weight 1, so new = 0.9 old + 0.1 f
    np.testing.assert_allclose(expected2[0], 0.9 * before[0] + 0.1 * np.array([2.0, 1.0]))


def test_labels_are_resized_nearest_to_the_feature_grid():
    bank = MemoryBank(num_classes=2, dim=1, feat_channels=1, momentum=0.9)
    feats = torch.tensor([[[[1.0, 5.0]]]])  # (1, 1, 1, 2)
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])  # (1, 2, 4) -> nearest (1, 2)
    bank.write(feats, labels)
    assert bank.prototypes[:, 0].tolist() == [1.0, 5.0]


def test_bank_is_a_buffer_and_inference_never_writes_it(tiny_model, patches):
    assert "memory.prototypes" in dict(tiny_model.named_buffers())
    assert all("prototypes" not in name for name, _ in tiny_model.named_parameters())
    before = tiny_model.memory.prototypes.clone()
    with torch.no_grad():
        tiny_model(patches)
        tiny_model.train()
        tiny_model(patches)  # even in train mode, forward() has no labels to write with
        tiny_model.forward_train(patches)  # no labels: no write
    assert torch.equal(tiny_model.memory.prototypes, before)


def test_forward_train_with_labels_writes_until_frozen(tiny_model, patches):
    labels = torch.randint(0, 3, (2, 64, 64))
    before = tiny_model.memory.prototypes.clone()
    with torch.no_grad():
        tiny_model.train().forward_train(patches, labels)
    assert not torch.equal(tiny_model.memory.prototypes, before)

    tiny_model.freeze_memory_bank()
    frozen = tiny_model.memory.prototypes.clone()
    with torch.no_grad():
        tiny_model.forward_train(patches, labels)
    assert torch.equal(tiny_model.memory.prototypes, frozen)
    with pytest.raises(RuntimeError, match="frozen"):
        tiny_model.memory.write(torch.zeros(1, 16, 2, 2), labels[:1])


def test_read_reweights_aux16_with_softmax_over_classes():
    bank = MemoryBank(num_classes=2, dim=2, feat_channels=2, momentum=0.9).eval()
    bank.read_proj = torch.nn.Identity()  # F = feat16, to check the formula alone
    bank.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    feat16 = torch.tensor([3.0, 1.0]).view(1, 2, 1, 1)
    aux16 = torch.tensor([0.5, -2.0]).view(1, 2, 1, 1)
    scores = torch.tensor([3.0, 2.0]) / math.sqrt(2)
    weights = scores.softmax(0)
    expected = weights * aux16.view(2) + aux16.view(2)
    torch.testing.assert_close(bank(feat16, aux16).view(2), expected)
