"""Training losses of each model family (:func:`build_loss`).

SGHRQ: cross-entropy on every logits head plus the training-only heads; weights default to the
reference implementation: CE 1.0 on the final, ASPP, aux8, aux16 and aux16_m logits;
super-resolution MSE 0.1; feature-affinity L1 1.0; FCN auxiliary CE 0.4. An optional Lovász-softmax
term on the final logits (off by default) optimises the per-class IoU directly.
SCPSeg: CE + 0.5 super-resolution L1 + 0.5 local feature alignment, as reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uhr_seg_ros.data.palettes import IGNORE_INDEX

#: Heads supervised with cross-entropy against the labels (key in ``forward_train``'s dict).
CE_HEADS = ("logits", "aspp", "aux8", "aux16", "aux16_m", "fcn")
#: Every term of the total loss, in the order the training logs list them.
LOSS_TERMS = (*CE_HEADS, "sr", "affinity", "lovasz")


def _check_weights(weights: Any) -> None:
    """Shared by every family's loss weights: class weights > 0 (stored as floats; null or [] for
    none), terms >= 0."""
    class_weights = tuple(float(w) for w in weights.class_weights or ())
    object.__setattr__(weights, "class_weights", class_weights)
    if any(w <= 0 for w in weights.class_weights):
        raise ValueError("every loss.class_weights entry must be > 0")
    for f in dataclasses.fields(weights):
        value = getattr(weights, f.name)
        if f.name != "class_weights" and value < 0:
            raise ValueError(f"loss weight {f.name} must be >= 0, got {value}")


def _class_weight_tensor(class_weights: tuple[float, ...]) -> torch.Tensor | None:
    """The CE's per-class weight tensor, or None for all ones."""
    return torch.tensor(class_weights, dtype=torch.float32) if class_weights else None


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term in the total loss (0 disables a term)."""

    # Final stride-1 logits of the query module.
    logits: float = 1.0
    # ASPP logits of the semantic branch (stride 32).
    aspp: float = 1.0
    # Shallow-branch logits at stride 8 and 16, and the memory-corrected stride-16 logits.
    aux8: float = 1.0
    aux16: float = 1.0
    aux16_m: float = 1.0
    # FCN auxiliary head on ResNet layer 3.
    fcn: float = 0.4
    # MSE of the super-resolution decoder against the normalised patch at half resolution.
    sr: float = 0.1
    # L1 between the shallow and semantic pixel-affinity (cosine similarity) matrices.
    affinity: float = 1.0
    # Lovász-softmax on the final logits (a surrogate of 1 - mean IoU over the classes present in
    # the batch); not in the reference, 0 = off.
    lovasz: float = 0.0
    # Per-class weights of every cross-entropy term (rare classes up), in label order; empty =
    # all 1. The CE stays a weighted mean over labelled pixels.
    class_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_weights(self)


def _at_label_size(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logits ``(B,C,h,w)`` resized (bilinear) to the labels' ``(H,W)``: every segmentation loss
    scores at label resolution."""
    if logits.shape[-2:] == labels.shape[-2:]:
        return logits
    return F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)


def segmentation_ce(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; logits ``(B,C,h,w)`` are resized (bilinear) to
    labels ``(B,H,W)`` int64 first. A batch with no labelled pixel gives 0, not NaN. With
    ``class_weights`` (C,) each pixel counts with its class's weight (weighted mean)."""
    logits = _at_label_size(logits, labels)
    if class_weights is None:
        total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (labels != IGNORE_INDEX).sum().clamp_min(1)
    weights = class_weights.to(logits.device, torch.float32)
    total = F.cross_entropy(
        logits.float(), labels, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    labelled = labels[labels != IGNORE_INDEX]
    return total / weights[labelled].sum().clamp_min(1e-6)


def affinity_l1(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the ``N x N`` cosine-similarity matrices of two feature maps
    ``(B, A, h, w)`` (``N = h*w``): do both agree which pixels are alike?"""

    def affinity(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float().flatten(2), dim=1)
        return x.transpose(1, 2) @ x

    return (affinity(first) - affinity(second)).abs().mean()


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax loss (Berman et al., CVPR 2018) over every labelled pixel of the batch.

    Why: cross-entropy scores pixels, the metric scores classes; this is the convex Lovász
    extension of each class's Jaccard loss on the sorted softmax errors, averaged over the
    classes present, so a small class's IoU counts as much as a large one's. Logits
    ``(B,C,h,w)`` are resized (bilinear) to labels ``(B,H,W)`` (255 = ignore); no labelled
    pixel gives 0."""
    logits = _at_label_size(logits, labels)
    probs = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    probs, labels = probs[keep], labels[keep]
    losses = []
    for c in labels.unique().tolist():
        foreground = (labels == c).float()
        errors, order = (foreground - probs[:, c]).abs().sort(descending=True)
        fg_sorted = foreground[order]
        total = fg_sorted.sum()
        # Jaccard loss of the top-k pixels predicted as c, for every k; its increments are the
        # weights of the sorted errors (the gradient of the Lovász extension).
        jaccard = 1.0 - (total - fg_sorted.cumsum(0)) / (total + (1.0 - fg_sorted).cumsum(0))
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, jaccard))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


class SGHRQLoss(nn.Module):
    """Weighted sum of every SGHRQ training loss.

    ``forward(outputs, labels)`` takes ``SGHRQ.forward_train``'s dict and labels ``(B,H,W)``
    int64 (255 = ignore) and returns ``(total, parts)``, ``parts`` holding each unweighted term
    (detached) for logging.
    """

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.class_weights = _class_weight_tensor(self.weights.class_weights)

    def forward(
        self, outputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {
            head: segmentation_ce(outputs[head], labels, self.class_weights) for head in CE_HEADS
        }
        terms["sr"] = F.mse_loss(outputs["sr"].float(), outputs["sr_target"].float())
        terms["affinity"] = affinity_l1(outputs["affinity_shallow"], outputs["affinity_semantic"])
        terms["lovasz"] = (
            lovasz_softmax(outputs["logits"], labels)
            if self.weights.lovasz > 0
            else outputs["logits"].new_zeros(())
        )
        total = sum(getattr(self.weights, name) * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}

    #: Names of the terms in ``parts`` (the training log's columns), in order.
    terms = LOSS_TERMS


# ---------------------------------------------------------------------------------- SCPSeg
@dataclass(frozen=True)
class SCPSegLossWeights:
    """SCPSeg's loss as reported: CE + 0.5 · L_SR + 0.5 · L_LFA."""

    # Cross-entropy of the window logits (the centre read-out) against the window labels.
    ce: float = 1.0
    # L1 between the SR decoder's full-resolution window and the normalised window.
    sr: float = 0.5
    # L1 between the segmentation and the (detached) SR features' local self-similarities.
    lfa: float = 0.5
    # Per-class weights of the cross-entropy, in label order; empty = all 1 (as LossWeights).
    class_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_weights(self)


class SCPSegLoss(nn.Module):
    """``forward(outputs, labels)`` on ``SCPSeg.forward_train``'s dict -> ``(total, parts)``.

    The logits cover the window at the centre of the neighbourhood crop, so they are scored
    against ``outputs["labels"]`` (that window's labels), not the crop's ``labels``. The SR
    features' self-similarity is the target of the alignment (detached): the segmentation
    features learn the SR branch's notion of which neighbours belong together, not vice versa.
    """

    terms = ("ce", "sr", "lfa")

    def __init__(self, weights: SCPSegLossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or SCPSegLossWeights()
        self.class_weights = _class_weight_tensor(self.weights.class_weights)

    def forward(
        self, outputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {
            "ce": segmentation_ce(
                outputs["logits"], outputs.get("labels", labels), self.class_weights
            ),
            "sr": F.l1_loss(outputs["sr"].float(), outputs["sr_target"].float()),
            "lfa": F.l1_loss(
                outputs["seg_similarity"].float(), outputs["sr_similarity"].float().detach()
            ),
        }
        total = sum(getattr(self.weights, name) * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}


#: Loss (and its weights dataclass) of each model family, by family name.
FAMILY_LOSSES: dict[str, tuple[type, type[nn.Module]]] = {
    "sghrq": (LossWeights, SGHRQLoss),
    "scpseg": (SCPSegLossWeights, SCPSegLoss),
}


def loss_weights_for(family: str, weights: Any) -> Any:
    """The weights dataclass of ``family`` from a mapping (unknown keys refused) or itself."""
    if family not in FAMILY_LOSSES:
        raise ValueError(
            f"no training loss for model family {family!r}; known: {sorted(FAMILY_LOSSES)}"
        )
    weights_type = FAMILY_LOSSES[family][0]
    if isinstance(weights, weights_type):
        return weights
    if not isinstance(weights, Mapping):
        raise ValueError(f"loss must be a mapping of weights, got {type(weights).__name__}")
    known = {f.name for f in dataclasses.fields(weights_type)}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(
            f"unknown loss weight(s) {unknown} for a {family} model; valid: {sorted(known)}"
        )
    return weights_type(**weights)


def build_loss(family: str, weights: Any = None) -> nn.Module:
    """The training loss of ``family`` with ``weights`` (mapping, dataclass or None: defaults)."""
    weights = loss_weights_for(family, {} if weights is None else weights)
    return FAMILY_LOSSES[family][1](weights)
