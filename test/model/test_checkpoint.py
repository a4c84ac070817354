import os
import pickle
import zipfile

import pytest
import torch

from uhr_seg_ros.model import (
    CheckpointError,
    SGHRQConfig,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_gives_identical_outputs_and_a_frozen_eval_model(tiny_model, patches, tmp_path):
    path = save_checkpoint(
        tmp_path / "m.pt",
        tiny_model,
        palette=[[0, 0, 0], [1, 2, 3], [4, 5, 6]],
        training={"iterations": 7},
    )
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_model.config
    assert not loaded.training and loaded.memory.frozen
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.train_heads is None  # inference graph only, whatever the file holds
    with pytest.raises(RuntimeError, match="without its training heads"):
        loaded.forward_train(patches)
    assert loaded.meta["training"] == {"iterations": 7}
    assert loaded.meta["class_names"] == list(tiny_model.config.class_names)
    assert torch.equal(loaded.memory.prototypes, tiny_model.memory.prototypes)
    with torch.no_grad():
        assert torch.equal(loaded(patches), tiny_model(patches))


def test_fp16_inference_only_checkpoint_is_smaller_and_loads_as_fp32(tiny_model, patches, tmp_path):
    full = save_checkpoint(tmp_path / "full.pt", tiny_model)
    small = save_checkpoint(tmp_path / "small.pt", tiny_model, half=True, inference_only=True)
    assert os.path.getsize(small) < 0.7 * os.path.getsize(full)
    raw = torch.load(small, weights_only=True)
    assert raw["dtype"] == "float16"
    assert raw["state_dict"]["query.mlp.0.0.weight"].dtype == torch.float16
    assert not any(k.startswith("train_heads.") for k in raw["state_dict"])
    loaded = load_checkpoint(small)
    assert loaded.query.mlp[0][0].weight.dtype == torch.float32
    with torch.no_grad():
        expected, got = tiny_model(patches), loaded(patches)
    assert (got - expected).abs().max() < 1e-2 * expected.abs().max()


def test_meta_must_be_plain_data(tiny_model, tmp_path):
    with pytest.raises(TypeError, match="only plain str, int"):
        save_checkpoint(tmp_path / "m.pt", tiny_model, bad=object())
    with pytest.raises(TypeError, match=r"meta.training.torch is a TorchVersion"):
        save_checkpoint(tmp_path / "m.pt", tiny_model, training={"torch": torch.__version__})


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_and_corrupt_files_are_refused(tiny_model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2048))
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(bad)


def test_foreign_architectures_are_refused(tiny_model, tmp_path):
    plain_state = tmp_path / "plain_state.pt"
    torch.save(torch.nn.Conv2d(3, 3, 1).state_dict(), plain_state)
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        load_checkpoint(plain_state)

    # Right format tag, but weights of another width than its config describes.
    path = save_checkpoint(tmp_path / "m.pt", tiny_model)
    payload = torch.load(path, weights_only=True)
    payload["config"] = SGHRQConfig.tiny(num_classes=5).to_dict()
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path / "mismatch.pt")

    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["query.mlp.0.0.weight"]
    payload["state_dict"]["head.fc.weight"] = torch.zeros(2)
    torch.save(payload, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys.*missing keys"):
        load_checkpoint(tmp_path / "keys.pt")

    payload = torch.load(path, weights_only=True)
    payload["config"]["backbone"] = "resnet50"
    torch.save(payload, tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match=r"invalid model config.*backbone"):
        load_checkpoint(tmp_path / "config.pt")


def test_nan_weights_are_refused(tiny_model, tmp_path):
    with torch.no_grad():
        tiny_model.aux8_head.weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", tiny_model)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would create the marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "uhr_seg_ros/sghrq", "payload": _Payload(str(marker))}, path)
    # Sanity: the file really would run code if unpickled without weights_only.
    with zipfile.ZipFile(path) as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(str(marker))))  # what an unsafe load would have done
    assert marker.exists()
