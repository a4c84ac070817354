"""Score model files on the val split, as the recipe ablations do: the split choices are made on.

Each argument is a model file, or several joined by ``+``: their uniform weight average (a
"model soup" of fine-tunes from one start; float tensors averaged, flags from the first). Each
is scored at every ``--blur`` sigma: the model's own weights with ``input_blur_sigma`` set to
it (0 = none), on the ``--val-crops`` fixed 512² val crops of ``config/train_lite_cpu.yaml``
through the trainer's ``validate`` (docs/model.md, "Ablations").

    OMP_NUM_THREADS=1 python benchmarks/val_score.py runs/ema_s5/model.pt \\
        runs/ema_s5/model_raw.pt "runs/ema_s5/model.pt+runs/ema_s6/model.pt" --blur 0 1.2

Prints one markdown row per (model, blur): val mIoU and per-class IoU, in percent.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_ablations import CLASSES, RECIPE, ROOT

from uhr_seg_ros.model import SegmentationModel, build_model, load_checkpoint


def averaged(paths: list[Path]) -> SegmentationModel:
    """The uniform average of same-config models' weights (the first model's object)."""
    models = [load_checkpoint(p) for p in paths]
    states = [m.state_dict() for m in models]
    mean = {
        k: torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    models[0].load_state_dict(mean)
    return models[0]


def with_blur(model: SegmentationModel, sigma: float) -> SegmentationModel:
    """The same weights with the input blur set to ``sigma`` (shapes no tensor)."""
    if getattr(model.config, "input_blur_sigma", 0.0) == sigma:
        return model
    copy = build_model(
        dataclasses.replace(model.config, input_blur_sigma=sigma), training_heads=False
    )
    copy.load_state_dict(model.state_dict())
    copy.meta = model.meta
    copy.prepare_for_inference()
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model file, or files joined by '+'")
    parser.add_argument("--blur", type=float, nargs="+", default=[0.0], help="sigmas to try")
    parser.add_argument("--val-crops", type=int, default=140)
    args = parser.parse_args()
    specs = [[Path(p).resolve() for p in spec.split("+")] for spec in args.models]
    missing = [str(p) for spec in specs for p in spec if not p.is_file()]
    if missing:
        sys.exit(f"no such model file: {', '.join(missing)}")
    os.chdir(ROOT)  # the recipe's data paths are relative to the repository root

    from uhr_seg_ros.training.config import load_train_config
    from uhr_seg_ros.training.crops import validation_crops
    from uhr_seg_ros.training.loop import validate

    cfg = load_train_config(RECIPE, overrides=[f"data.val_crops={args.val_crops}"])
    crops = None
    print("| model | blur | val mIoU | " + " | ".join(CLASSES) + " |")
    print("|" + "---|" * (3 + len(CLASSES)))
    for spec, name in zip(specs, args.models, strict=True):
        base = averaged(spec) if len(spec) > 1 else load_checkpoint(spec[0])
        for sigma in args.blur:
            model = with_blur(base, sigma).eval()
            if crops is None:
                crops = validation_crops(cfg, model.config.class_names)
            with torch.inference_mode():
                miou, per_class = validate(model, crops, torch.device("cpu"))
            cells = [f"`{name}`", f"{sigma:g}", f"{100 * miou:.2f}"]
            cells += [f"{100 * v:.1f}" for v in per_class]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
