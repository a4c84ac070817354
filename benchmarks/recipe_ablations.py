"""Ablations of the CPU training recipe: one change at a time, the same start, budget and scores.

Each variant fine-tunes the same start checkpoint with ``config/train_lite_cpu.yaml`` plus the
variant's ``--set`` overrides for the same number of steps, then is scored two ways:

* **val**: ``--val-crops`` fixed 512² crops (default 140, four per quadrant) of the 35
  ``deepglobe_512`` val quadrants (the community val list's parents), resampled to the model's
  0.5 m as in training, scored with the trainer's own ``validate``: the split the choices are
  made on. (The trainer's in-run validation uses only 12 crops: too few to rank runs.)
* **held-out**: ``uhr-seg eval`` on the DeepGlobe tiles 6399 and 10452 (never trained on), with
  default settings on the CPU: the figure issue 14's target is stated in.

    git show 8bcfb2d:models/sghrq_deepglobe_lite.pt > runs/lite_v2.pt
    OMP_NUM_THREADS=1 python benchmarks/recipe_ablations.py --init runs/lite_v2.pt \\
        --steps 400 --out runs/ablate               # all variants, one after the other
    python benchmarks/recipe_ablations.py --init runs/lite_v2.pt --only base no_synthetic ...

A variant whose ``model.pt`` already exists is not retrained (rerun to extend the table).
Prints (and writes to ``OUT/ablations.md``) one markdown row per variant with the wall time of
its training. Run it with ``OMP_NUM_THREADS=1`` beside other work: on a 2-core machine one
thread per process is the fastest arrangement (docs/model.md, "CPU threads").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ("6399", "10452")
CLASSES = ("urban", "agriculture", "rangeland", "forest", "water", "barren")

RECIPE = ROOT / "config" / "train_lite_cpu.yaml"


def synthetic_weight(weight: float) -> str:
    """A ``data.train`` override: the recipe's sources with the synthetic one re-weighted
    (dropped at 0). JSON is YAML, so the list goes to ``--set`` as it is."""
    sources = yaml.safe_load(RECIPE.read_text())["data"]["train"]
    kept = [
        {**src, "weight": weight} if src["spec"].startswith("synthetic:") else src
        for src in sources
        if weight or not src["spec"].startswith("synthetic:")
    ]
    return "data.train=" + json.dumps(kept)


#: name -> (what it tests, --set overrides on top of the shared short schedule)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("the shipped recipe (crop 384, batch 4, AdamW, class-weighted CE)", []),
    "base_seed1": (
        "the shipped recipe, another seed: how far runs differ by chance",
        ["run.seed=1"],
    ),
    "gsd_as_scale_aug": (
        "512² quadrants at their own 1.2 m (a scale augmentation), not resampled to 0.5 m",
        ["data.gsd_m=null"],
    ),
    "no_synthetic": (
        "no synthetic scenes (real tiles and quadrants only)",
        [synthetic_weight(0)],
    ),
    "synthetic_30pct": ("30 % synthetic scenes instead of 10 %", [synthetic_weight(4)]),
    "crop512_batch2": (
        "crop 512 at batch 2 (about the same pixels per step)",
        ["data.crop_size=512", "schedule.batch_size=2"],
    ),
    "unweighted_ce": ("plain CE (no class weights)", ["loss.class_weights=null"]),
    "sgd": (
        "SGD momentum 0.9, lr 1e-2 (the paper's optimiser) instead of AdamW 1e-3",
        ["schedule.optimizer=sgd", "schedule.lr=0.01", "schedule.weight_decay=0.0005"],
    ),
    "no_color_jitter": ("no colour augmentation", ["data.color_jitter=0.0"]),
}


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed (exit {code}); see {log}")


def val_miou(model_path: Path, crops: int) -> float:
    """mIoU of ``model_path`` on ``crops`` fixed val crops, as the trainer validates (cached)."""
    cached = model_path.parent / f"val{crops}.json"
    if cached.is_file():
        return float(json.loads(cached.read_text())["miou"])
    import torch

    from uhr_seg_ros.model import load_checkpoint
    from uhr_seg_ros.training.config import load_train_config
    from uhr_seg_ros.training.crops import validation_crops
    from uhr_seg_ros.training.loop import validate

    cfg = load_train_config(RECIPE, overrides=[f"data.val_crops={crops}"])
    model = load_checkpoint(model_path)
    with torch.inference_mode():
        miou, _ = validate(
            model, validation_crops(cfg, model.config.class_names), torch.device("cpu")
        )
    cached.write_text(json.dumps({"miou": miou, "crops": crops}) + "\n")
    return miou


def train_and_score(name: str, init: Path, steps: int, out: Path, crops: int) -> dict:
    overrides = VARIANTS[name][1]
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    wall = None
    if not (run_dir / "model.pt").is_file():
        cmd = [
            sys.executable,
            "-m",
            "uhr_seg_ros.cli",
            "train",
            "--no-progress",
            "--config",
            str(RECIPE),
            "--out",
            str(run_dir),
            "--set",
            f"model.init_from={init}",
            "--set",
            f"schedule.iterations={steps}",
            "--set",
            f"schedule.epoch_iterations={max(1, steps // 4)}",
            "--set",
            "data.val=[]",  # scored below on many more crops than the in-run validation uses
            "--set",
            "run.checkpoint_every=100",
        ]
        for item in overrides:
            cmd += ["--set", item]
        start = time.monotonic()
        run(cmd, run_dir / "train.out")
        wall = time.monotonic() - start
        (run_dir / "wall_s.txt").write_text(f"{wall:.0f}\n")
    elif (run_dir / "wall_s.txt").is_file():
        wall = float((run_dir / "wall_s.txt").read_text())
    scores = run_dir / "held_out"
    if not (scores / "results.json").is_file():
        run(
            [
                sys.executable,
                "-m",
                "uhr_seg_ros.cli",
                "eval",
                "--data",
                "deepglobe:../shared/data/deepglobe",
                "--ids",
                *HELD_OUT,
                "--model",
                str(run_dir / "model.pt"),
                "--backend",
                "cpu",
                "--no-vis",
                "--out",
                str(scores),
            ],
            run_dir / "eval.out",
        )
    results = json.loads((scores / "results.json").read_text())
    return {
        "name": name,
        "wall_s": wall,
        "val": val_miou(run_dir / "model.pt", crops),
        "held_out": results,
    }


def row(result: dict) -> str:
    held = result["held_out"]
    per_class = held["per_class_iou"]
    ious = [per_class.get(c) for c in CLASSES]
    wall = "" if result["wall_s"] is None else f"{result['wall_s'] / 60:.0f} min"
    cells = [
        f"`{result['name']}`",
        VARIANTS[result["name"]][0],
        wall,
        f"{100 * result['val']:.1f}",
        f"{100 * held['miou']:.1f}",
    ]
    cells += ["" if v is None else f"{100 * v:.1f}" for v in ious]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", type=Path, required=True, help="start checkpoint for every run")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("runs/ablate"))
    parser.add_argument("--val-crops", type=int, default=140, help="val crops per score")
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="these variants")
    args = parser.parse_args()
    args.init, args.out = args.init.resolve(), args.out.resolve()
    os.chdir(ROOT)  # the recipe's data paths are relative to the repository root
    if not args.init.is_file():
        sys.exit(f"--init {args.init}: no such checkpoint")
    if os.environ.get("OMP_NUM_THREADS") is None:
        print("note: OMP_NUM_THREADS is unset; one thread is fastest beside other work")
    header = (
        "| run | what changed | train wall | val mIoU | held-out mIoU | "
        + " | ".join(CLASSES)
        + " |"
    )
    lines = [header, "|" + "---|" * (5 + len(CLASSES))]
    print(header, flush=True)
    for name in args.only or list(VARIANTS):
        lines.append(row(train_and_score(name, args.init, args.steps, args.out, args.val_crops)))
        print(lines[-1], flush=True)
        (args.out / "ablations.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
