"""The bank's all-reduce under a real 2-process gloo group (CPU)."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from uhr_seg_ros.model.memory import MemoryBank


def _write_on_rank(rank: int, init_file: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        bank = MemoryBank(num_classes=3, dim=2, feat_channels=2, momentum=0.9)
        # Rank 0 sees classes 0 and 1, rank 1 sees classes 0 and 2 (one pixel each, 1x2 grid).
        feats = torch.tensor([[[[1.0, 3.0]], [[2.0, 5.0]]]]) * (rank + 1)
        labels = torch.tensor([[[0, 1 + rank]]])
        bank.write(feats, labels)
        results[rank] = (bank.prototypes.clone(), bank.initialised.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_prototypes_are_averaged_over_the_processes_that_saw_the_class(tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_write_on_rank, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
    (bank0, seen0), (bank1, seen1) = results[0], results[1]
    assert torch.equal(bank0, bank1) and torch.equal(seen0, seen1) and seen0.all()
    # class 0: both ranks, first write = own mean, averaged: ((1,2) + (2,4)) / 2
    torch.testing.assert_close(bank0[0], torch.tensor([1.5, 3.0]))
    # classes 1 and 2: one rank each, not diluted by the rank that did not see them
    torch.testing.assert_close(bank0[1], torch.tensor([3.0, 5.0]))
    torch.testing.assert_close(bank0[2], torch.tensor([6.0, 10.0]))
