"""The weight average: its arithmetic, what a run writes with it, and that a resume keeps it."""

import pytest
import torch

from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint
from uhr_seg_ros.training.config import ScheduleSection, train_config_from_dict
from uhr_seg_ros.training.ema import WeightAverage
from uhr_seg_ros.training.loop import train

EMA_RUN = {
    "model": {"preset": "tiny"},
    "data": {"train": ["synthetic:2@96"], "crop_size": 64, "workers": 0},
    "schedule": {"iterations": 6, "batch_size": 2, "epoch_iterations": 4, "ema_decay": 0.5},
    "run": {"log_every": 1, "checkpoint_every": 3, "val_every": 0},
}


def test_the_average_moves_a_fixed_fraction_towards_the_live_weights():
    torch.manual_seed(0)
    live = build_model(SGHRQConfig.tiny(num_classes=3))
    average = WeightAverage(live, decay=0.75)
    before = {k: v.clone() for k, v in average.state_dict().items()}
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    live.memory.initialised.fill_(True)
    live.memory.prototypes.fill_(2.0)
    average.update(live)
    after = average.state_dict()
    conv = next(k for k, v in before.items() if v.dim() == 4)
    torch.testing.assert_close(after[conv], before[conv] + 0.25)  # 0.75 * w + 0.25 * (w + 1)
    torch.testing.assert_close(
        after["memory.prototypes"], torch.full_like(before["memory.prototypes"], 0.5)
    )
    assert after["memory.initialised"].all()  # flags follow the live model, not averaged
    assert not any(p.requires_grad for p in average.model.parameters())
    assert average.model.training is False


def test_decay_outside_the_open_unit_interval_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        ScheduleSection(iterations=10, ema_decay=1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(build_model(SGHRQConfig.tiny(num_classes=2)), decay=0.0)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_a_run_with_an_average_writes_both_and_resumes_the_average_exactly(tmp_path):
    cfg = train_config_from_dict(EMA_RUN)
    seen = []
    straight = train(
        cfg, tmp_path / "straight", progress=False, validate_fn=lambda m, i: seen.append(m) or None
    )
    averaged = load_checkpoint(straight.model_path)
    raw = load_checkpoint(tmp_path / "straight" / "model_raw.pt")
    key = next(k for k, v in raw.state_dict().items() if v.dim() == 4)
    assert not torch.equal(averaged.state_dict()[key], raw.state_dict()[key])
    assert all(not m.training for m in seen)  # validation saw the (eval-mode) average

    def crash_at_4(model, iteration):
        if iteration == 4:
            raise _Interrupt

    resumed = tmp_path / "resumed"
    cfg_val = train_config_from_dict(EMA_RUN, overrides=["run.val_every=1"])
    with pytest.raises(_Interrupt):
        train(cfg_val, resumed, progress=False, validate_fn=crash_at_4)
    train(
        cfg_val, resumed, resume=resumed / "last.pt", progress=False, validate_fn=lambda m, i: None
    )
    again = load_checkpoint(resumed / "model.pt")
    for name, value in averaged.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=1e-3, atol=1e-4, msg=name)
