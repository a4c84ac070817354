"""Model checkpoints: config + state dict + plain-data meta, loaded without running any code.

File layout (a ``torch.save`` dict, read back with ``weights_only=True``)::

    {"format": "uhr_seg_ros/sghrq", "version": 2, "family": "sghrq" | "scpseg" | ...,
     "config": <family config>.to_dict(), "state_dict": {name: tensor},
     "dtype": "float32" | "float16", "meta": {...}}

Version 1 files (written before model families existed) have no ``family`` and are SGHRQ. The
format tag keeps its historic name so that every existing checkpoint still loads.

``meta`` holds plain values only (class names, palette, training info), so a checkpoint never
needs ``pickle`` to execute anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .contract import SegmentationModel
from .families import build_model, get_family
from .sghrq import TRAIN_HEADS_PREFIX

FORMAT = "uhr_seg_ros/sghrq"
VERSION = 2
#: The family of version-1 files.
LEGACY_FAMILY = "sghrq"
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """The file is not a usable model checkpoint (the message says why and what to do)."""


def _check_plain(value: Any, where: str) -> None:
    # Exact types: a subclass (e.g. torch.__version__, a str subclass) pickles as a global.
    if type(value) in _PLAIN:
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"checkpoint meta {where} has a non-string key {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise TypeError(
        f"checkpoint meta {where} is a {type(value).__name__}; only plain str, int, "
        "float, bool, None, lists and dicts of them are stored (no pickled objects)"
    )


def checkpoint_payload(
    model: SegmentationModel, *, half: bool = False, inference_only: bool = False, **meta: Any
) -> dict[str, Any]:
    """The dict :func:`save_checkpoint` writes (also embedded in training-state files)."""
    _check_plain(meta, "meta")
    meta.setdefault("class_names", list(model.config.class_names))
    state = model.inference_state_dict() if inference_only else model.state_dict()
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
        for k, v in state.items()
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "family": model.family,
        "config": model.config.to_dict(),
        "state_dict": state,
        "dtype": "float16" if half else "float32",
        "meta": meta,
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: SegmentationModel,
    *,
    half: bool = False,
    inference_only: bool = False,
    **meta: Any,
) -> Path:
    """Write ``model`` to ``path`` (atomically: a crash never leaves half a file behind).

    ``half=True`` stores floating tensors as fp16 (the shipped model; loaded back as fp32);
    ``inference_only=True`` drops the training-only heads. ``meta`` holds plain values only, e.g.
    ``palette=[[r, g, b], ...]`` or ``training={"iterations": 1000}``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint_payload(model, half=half, inference_only=inference_only, **meta)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc)
        code = re.search(r"GLOBAL (\S+)", text)
        if code:
            raise CheckpointError(
                f"refusing to load {path}: it contains pickled Python objects ({code.group(1)}), "
                "i.e. possibly code, which a model checkpoint never needs. Only load files you "
                "trust, and re-save trusted ones with uhr_seg_ros.model.save_checkpoint"
            ) from None
        detail = next(
            (
                line.strip()
                for line in reversed(text.splitlines())
                if line.strip() and "torch.load" not in line
            ),
            "no detail",
        )
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated: "
            f"{type(exc).__name__}: {detail}); "
            "copy or download it again"
        ) from None


def model_from_payload(
    payload: Any, source: str = "checkpoint", training_heads: bool = True
) -> Any:
    """Build the network of a checkpoint dict, of the family it names (train mode; nothing
    frozen).

    With ``training_heads=False`` the heads' weights in the file are ignored and not built.
    """
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is not a model checkpoint of this package (no format tag {FORMAT!r}); "
            "convert foreign weights with a script that builds the model and calls "
            "save_checkpoint"
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{source} has format version {version!r}; this package reads "
            f"versions up to {VERSION}: upgrade uhr_seg_ros"
        )
    state = payload.get("state_dict")
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{source} has no valid state_dict (name -> tensor)")
    family_name = payload.get("family", LEGACY_FAMILY) if version >= 2 else LEGACY_FAMILY
    try:
        family = get_family(family_name)
    except ValueError as exc:
        raise CheckpointError(
            f"{source}: {exc} (written by a newer or extended uhr_seg_ros?)"
        ) from None
    try:
        config = family.config_from_dict(payload.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} has an invalid model config: {exc}") from None

    model = build_model(config, training_heads)
    if not training_heads:
        state = {k: v for k, v in state.items() if not k.startswith(TRAIN_HEADS_PREFIX)}
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(TRAIN_HEADS_PREFIX))
    mismatched = sorted(
        k for k in set(state) & set(expected) if state[k].shape != expected[k].shape
    )
    problems = [
        f"{label} {names[:5]}{' ...' if len(names) > 5 else ''}"
        for label, names in (
            ("unexpected keys", unexpected),
            ("missing keys", missing),
            ("shape mismatches", mismatched),
        )
        if names
    ]
    if problems:
        raise CheckpointError(
            f"{source} does not match the {family.name} architecture its config "
            f"describes: {'; '.join(problems)}"
        )
    bad = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"{source} holds NaN/inf weights in {bad[:5]}; the training run that wrote it diverged"
        )
    model.load_state_dict(state, strict=False)
    model.meta = dict(payload.get("meta") or {})
    return model


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Rebuild the inference model stored in ``path``, whatever its family: eval mode, frozen
    for inference (SGHRQ: memory bank), no gradients, no training heads
    (``model.train_heads is None``).

    Raises :class:`CheckpointError` (a ``ValueError``) for a corrupt, truncated, foreign or
    code-carrying file and ``FileNotFoundError`` for a missing one. fp16 files load as fp32.
    """
    model = model_from_payload(
        read_checkpoint(path, map_location), source=str(path), training_heads=False
    )
    model.prepare_for_inference()
    model.requires_grad_(False)
    return model.eval().to(map_location)


__all__ = [
    "CheckpointError",
    "checkpoint_payload",
    "load_checkpoint",
    "model_from_payload",
    "read_checkpoint",
    "save_checkpoint",
]
