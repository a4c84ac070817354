import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from uhr_seg_ros.cli import main as cli_main
from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint
from uhr_seg_ros.paths import config_dir
from uhr_seg_ros.training.config import ScheduleSection, load_train_config, train_config_from_dict
from uhr_seg_ros.training.crops import pad_to_divisor
from uhr_seg_ros.training.loop import TrainStep, make_optimizer, train
from uhr_seg_ros.training.losses import SGHRQLoss

TINY_RUN = {
    "model": {"preset": "tiny"},
    "data": {"train": ["synthetic:2@96"], "crop_size": 64, "workers": 0},
    "schedule": {"iterations": 6, "batch_size": 2, "epoch_iterations": 4},
    "run": {"log_every": 1, "checkpoint_every": 3, "val_every": 0},
}


@pytest.mark.slow
def test_a_few_steps_decrease_the_loss_and_the_first_write_is_the_class_mean():
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(num_classes=3)).train()
    images = torch.rand(2, 3, 96, 96) * 255
    # Vertical stripes of classes 0, 1, 2 (one per stride-32 column), the top rows ignored.
    labels = (torch.arange(96) // 32).expand(2, 96, 96).clone()
    labels[:, :16] = 255
    images[:, 0] += 40.0 * labels.clamp(max=2)  # a colour cue the network can learn quickly
    images = images.clamp(0, 255)
    features = model.forward_train(images)["semantic_features"].detach()  # no labels: no write
    assert not model.memory.initialised.any()

    step = TrainStep(model, SGHRQLoss())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    losses = []
    for i in range(12):
        loss, _ = step(images, labels)
        if i == 0:
            small = F.interpolate(
                labels[:, None].float(), size=features.shape[-2:], mode="nearest"
            )[:, 0].long()
            flat = features.permute(0, 2, 3, 1)
            for c in range(3):
                torch.testing.assert_close(model.memory.prototypes[c], flat[small == c].mean(0))
            assert model.memory.initialised.all()
            first_bank = model.memory.prototypes.clone()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
    assert not torch.equal(model.memory.prototypes, first_bank)  # written every step


def test_poly_schedule_and_padding():
    schedule = ScheduleSection(iterations=100, lr=0.01, min_lr=1e-4, poly_power=0.9)
    assert schedule.lr_at(0) == pytest.approx(0.01)
    assert schedule.lr_at(50) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert schedule.lr_at(100) == pytest.approx(1e-4)
    images, labels = pad_to_divisor(torch.ones(1, 3, 40, 64), torch.zeros(1, 40, 64).long())
    assert images.shape == (1, 3, 64, 64) and labels.shape == (1, 64, 64)
    assert (labels[:, 40:] == 255).all() and (images[:, :, 40:] == 0).all()


def test_warmup_ramps_up_to_the_peak_lr_then_poly_decays():
    schedule = ScheduleSection(iterations=100, lr=0.01, min_lr=1e-4, warmup_iterations=10)
    assert schedule.lr_at(0) == pytest.approx(0.01 * (0.01 + 0.99 * 0.1))
    assert schedule.lr_at(9) == pytest.approx(0.01)
    assert schedule.lr_at(0) < schedule.lr_at(5) < schedule.lr_at(9)
    assert schedule.lr_at(50) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    with pytest.raises(ValueError, match="warmup"):
        ScheduleSection(iterations=10, warmup_iterations=10)


def test_fine_tuning_to_other_classes_reuses_what_transfers(tmp_path):
    from uhr_seg_ros.model import save_checkpoint
    from uhr_seg_ros.training.checkpoints import initial_model

    torch.manual_seed(0)
    source = build_model(SGHRQConfig.tiny(num_classes=6))
    path = save_checkpoint(tmp_path / "six.pt", source)
    cfg = train_config_from_dict(
        {
            **TINY_RUN,
            "model": {
                "preset": "tiny",
                "class_names": ["road", "roof", "tree"],
                "init_from": str(path),
            },
        }
    )
    model = initial_model(cfg)
    assert model.config.num_classes == 3
    torch.testing.assert_close(
        model.semantic.layer4[0].conv1[0].weight, source.semantic.layer4[0].conv1[0].weight
    )
    assert model.aux8_head.weight.shape[0] == 3 and not model.memory.initialised.any()
    same = initial_model(
        train_config_from_dict(
            {
                **TINY_RUN,
                "model": {
                    "preset": "tiny",
                    "class_names": list(source.config.class_names),
                    "init_from": str(path),
                },
            }
        )
    )
    torch.testing.assert_close(same.aux8_head.weight, source.aux8_head.weight)
    blurred = initial_model(
        train_config_from_dict(
            {
                **TINY_RUN,
                "model": {
                    "preset": "tiny",
                    "class_names": list(source.config.class_names),
                    "overrides": {"input_blur_sigma": 1.0},
                    "init_from": str(path),
                },
            }
        )
    )  # a field that shapes no tensor: everything carries over, the new value applies
    assert blurred.config.input_blur_sigma == 1.0
    torch.testing.assert_close(blurred.aux8_head.weight, source.aux8_head.weight)
    torch.testing.assert_close(blurred.memory.prototypes, source.memory.prototypes)
    with pytest.raises(ValueError, match="different model config"):
        initial_model(
            train_config_from_dict(
                {**TINY_RUN, "model": {"preset": "lite", "init_from": str(path)}}
            )
        )


def test_optimizer_choice_follows_the_schedule():
    model = torch.nn.Linear(2, 2)
    sgd = make_optimizer(model, ScheduleSection(lr=0.01, momentum=0.9, weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adamw = make_optimizer(
        model,
        ScheduleSection(optimizer="adamw", lr=2e-3, momentum=0.8, weight_decay=0.01, min_lr=1e-5),
    )
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["betas"] == (0.8, 0.999) and adamw.defaults["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="optimizer"):
        ScheduleSection(optimizer="adam")


@pytest.mark.parametrize("path", sorted(config_dir().glob("train_*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_with_and_without_reduced(path):
    full = load_train_config(path)
    reduced = load_train_config(path, reduced=True)
    assert reduced.schedule.iterations < full.schedule.iterations
    assert reduced.data.crop_size <= full.data.crop_size
    assert full.model.build_config().num_classes == len(full.model.class_names)


def test_paper_recipe_is_in_the_deepglobe_config():
    cfg = load_train_config(config_dir() / "train_deepglobe.yaml")
    s = cfg.schedule
    recipe = (s.lr, s.momentum, s.weight_decay, s.poly_power, s.min_lr)
    assert recipe == (0.01, 0.9, 5e-4, 0.9, 1e-4)
    assert (cfg.data.crop_size, s.batch_size, s.iterations) == (1224, 8, 80000)
    assert cfg.model.preset == "paper"


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown key.*'itrations'.*schedule"):
        train_config_from_dict({**TINY_RUN, "schedule": {"itrations": 5}})
    with pytest.raises(ValueError, match=r"data\.train is empty"):
        train_config_from_dict({"model": {"preset": "tiny"}})
    with pytest.raises(ValueError, match=r"section\.key=value"):
        train_config_from_dict(TINY_RUN, overrides=["iterations=5"])
    with pytest.raises(ValueError, match=r"data\.coarse_sensor_factor must be >= 1"):
        train_config_from_dict(TINY_RUN, overrides=["data.coarse_sensor_factor=0.5"])
    cfg = train_config_from_dict(TINY_RUN, overrides=["schedule.iterations=9", "run.seed=3"])
    assert cfg.schedule.iterations == 9 and cfg.run.seed == 3


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_cli_run_and_resume_reproduce_an_uninterrupted_run(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    straight = tmp_path / "straight"
    assert (
        cli_main(["train", "--config", str(config), "--out", str(straight), "--no-progress"]) == 0
    )
    model = load_checkpoint(straight / "model.pt")
    assert model.meta["training"]["iterations"] == 6 and model.memory.initialised.any()
    assert model.meta["palette"][0] == [0, 255, 255]  # DeepGlobe colours from the data set
    assert (straight / "config.yaml").is_file() and len(_rows(straight / "train_log.csv")) == 6

    # Same run, killed after iteration 4 (last save at 3), then resumed.
    cfg = train_config_from_dict(TINY_RUN, overrides=["run.val_every=1"])
    resumed = tmp_path / "resumed"

    def crash_at_4(model, iteration):
        if iteration == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(cfg, resumed, progress=False, validate_fn=crash_at_4)
    assert len(_rows(resumed / "train_log.csv")) == 4
    train(cfg, resumed, resume=resumed / "last.pt", progress=False, validate_fn=lambda m, i: None)

    rows_a, rows_b = _rows(straight / "train_log.csv"), _rows(resumed / "train_log.csv")
    assert [r["iteration"] for r in rows_b] == [str(i) for i in range(1, 7)]  # stale row 4 gone
    for a, b in zip(rows_a, rows_b, strict=False):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5, abs=1e-6)
    state_a = torch.load(straight / "last.pt", weights_only=True)
    state_b = torch.load(resumed / "last.pt", weights_only=True)
    assert state_b["iteration"] == 6
    for key, value in state_a["model"]["state_dict"].items():
        torch.testing.assert_close(
            state_b["model"]["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key
        )
    momentum_a = state_a["optimizer"]["state"][0]["momentum_buffer"]
    torch.testing.assert_close(
        state_b["optimizer"]["state"][0]["momentum_buffer"], momentum_a, rtol=1e-5, atol=1e-6
    )
    assert state_b["scheduler"]["last_epoch"] == 6


@pytest.mark.gpu
def test_amp_training_on_cuda_writes_a_loadable_model(tmp_path):
    cfg = train_config_from_dict(
        TINY_RUN, overrides=["run.device=cuda", "run.amp=true", "schedule.iterations=2"]
    )
    result = train(cfg, tmp_path, progress=False)
    model = load_checkpoint(result.model_path)
    assert model.memory.initialised.any() and math.isfinite(result.final_loss)


def test_scpseg_recipe_trains_on_neighbourhood_crops(tmp_path):
    run = {
        **TINY_RUN,
        "model": {"family": "scpseg", "preset": "tiny"},
        "data": {**TINY_RUN["data"], "crop_size": 128, "val_crop_size": 128},
        "schedule": {**TINY_RUN["schedule"], "iterations": 2},
        "loss": {"ce": 1.0, "sr": 0.5, "lfa": 0.5},
    }
    result = train(train_config_from_dict(run), tmp_path, progress=False)
    assert load_checkpoint(result.model_path).family == "scpseg"
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0].split(",")
    assert {"ce", "sr", "lfa"} <= set(header) and "aux8" not in header


def test_scpseg_recipe_errors_name_the_fix():
    run = {
        **TINY_RUN,
        "model": {"family": "scpseg", "preset": "tiny"},
        "data": {**TINY_RUN["data"], "crop_size": 96, "val_crop_size": 128},
    }
    with pytest.raises(ValueError, match="not a window neighbourhood"):
        train_config_from_dict(run)
    run["data"]["crop_size"] = 128
    with pytest.raises(ValueError, match="unknown loss weight"):
        train_config_from_dict({**run, "loss": {"aux8": 1.0}})
    with pytest.raises(ValueError, match=r"model\.family"):
        train_config_from_dict({**run, "model": {"family": "unet"}})
    assert load_train_config(config_dir() / "train_scpseg_lite_cpu.yaml").model.family == "scpseg"
    assert load_train_config(config_dir() / "train_scpseg_deepglobe.yaml").data.crop_size == 1024
