"""Data set parsing on tiny fixtures written to tmp_path, every bad-sample kind, splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from uhr_seg_ros.data.datasets import (
    BadSampleError,
    DeepGlobeDataset,
    FolderDataset,
    InriaDataset,
    SyntheticDataset,
    build_dataset,
    hash_split,
)
from uhr_seg_ros.data.palettes import DEEPGLOBE_PALETTE, IGNORE_INDEX


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _deepglobe_tile(root: Path, tile_id: str, size: int = 16) -> np.ndarray:
    """Write a tile whose mask holds classes 0..5 in stripes and one unknown (black) row."""
    ids = np.repeat(np.arange(6), -(-size // 6))[:size]
    label = np.tile(ids[:, None], (1, size)).astype(np.uint8)
    colours = np.array(DEEPGLOBE_PALETTE, np.uint8)[label]
    colours[-1] = 0
    label[-1] = IGNORE_INDEX
    _write_rgb(root / f"{tile_id}_sat.jpg", np.full((size, size, 3), 100, np.uint8))
    _write_rgb(root / f"{tile_id}_mask.png", colours)
    return label


@pytest.fixture
def deepglobe_root(tmp_path: Path) -> Path:
    for tile_id in ("1", "2", "3", "4"):
        _deepglobe_tile(tmp_path, tile_id)
    return tmp_path


def test_deepglobe_decodes_colours_and_unknown(tmp_path: Path) -> None:
    expected = _deepglobe_tile(tmp_path, "42")
    sample = DeepGlobeDataset(tmp_path)[0]
    assert sample.name == "42"
    assert sample.image.shape == (16, 16, 3) and sample.image.dtype == np.uint8
    assert sample.label.dtype == np.uint8
    np.testing.assert_array_equal(sample.label, expected)


def test_deepglobe_split_files_select_ids(deepglobe_root: Path) -> None:
    (deepglobe_root / "train.txt").write_text("1_sat.jpg\n3\n")
    (deepglobe_root / "val.txt").write_text("2\n")
    assert DeepGlobeDataset(deepglobe_root, "train").names == ["1", "3"]
    assert DeepGlobeDataset(deepglobe_root, "val").names == ["2"]
    assert DeepGlobeDataset(deepglobe_root, "all").names == ["1", "2", "3", "4"]
    assert DeepGlobeDataset(deepglobe_root, ids=["4", "1"]).names == ["4", "1"]
    with pytest.raises(FileNotFoundError, match="99"):
        DeepGlobeDataset(deepglobe_root, ids=["99"])


def test_hash_split_is_stable_and_holds_out_tiles() -> None:
    names = [f"tile{i}" for i in range(20)]
    first, second = hash_split(names), hash_split(list(reversed(names)))
    assert first == second
    counts = {s: list(first.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 14, "val": 3, "test": 3}
    assert set(hash_split(["a", "b", "c"]).values()) == {"train", "val", "test"}


def test_deepglobe_without_split_files_uses_the_community_split(tmp_path: Path) -> None:
    for tile_id in ("2774", "10452", "6399", "1"):  # community val, test, train, unlisted
        _deepglobe_tile(tmp_path, tile_id)
    splits = {s: DeepGlobeDataset(tmp_path, s).names for s in ("train", "val", "test")}
    assert splits == {"train": ["1", "6399"], "val": ["2774"], "test": ["10452"]}


def test_deepglobe_512_quadrants_follow_their_parent_and_know_their_gsd(tmp_path: Path) -> None:
    from uhr_seg_ros.data.datasets import DeepGlobe512Dataset

    names = ["0235"] + [f"{i:04d}" for i in range(300, 340)]  # 0235 is a quadrant of 6399
    for name in names:
        _deepglobe_tile(tmp_path, name)
    splits = {s: set(DeepGlobe512Dataset(tmp_path, s).names) for s in ("train", "val", "test")}
    assert "0235" in splits["train"] and not splits["test"]
    assert splits["train"] | splits["val"] == set(names) and not splits["train"] & splits["val"]
    assert 1 <= len(splits["val"]) <= 15
    assert DeepGlobe512Dataset(tmp_path).gsd_m == pytest.approx(1.195, abs=1e-3)
    assert build_dataset(f"deepglobe512:{tmp_path}", "all").gsd_m > DeepGlobeDataset.gsd_m


def test_deepglobe_512_reads_pure_red_as_unknown(tmp_path: Path) -> None:
    from uhr_seg_ros.data.datasets import DeepGlobe512Dataset

    expected = _deepglobe_tile(tmp_path, "0001")
    mask = cv2.cvtColor(cv2.imread(str(tmp_path / "0001_mask.png")), cv2.COLOR_BGR2RGB)
    mask[0, 0] = (255, 0, 0)
    _write_rgb(tmp_path / "0001_mask.png", mask)
    expected[0, 0] = IGNORE_INDEX
    np.testing.assert_array_equal(DeepGlobe512Dataset(tmp_path)[0].label, expected)


def test_folder_palette_may_state_the_gsd(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _write_rgb(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "palette.yaml").write_text("classes: [x]\ncolors: [[0, 0, 0]]\n")
    assert FolderDataset(tmp_path).gsd_m is None
    (tmp_path / "palette.yaml").write_text("classes: [x]\ncolors: [[0, 0, 0]]\ngsd_m: 0.3\n")
    assert FolderDataset(tmp_path).gsd_m == 0.3
    (tmp_path / "palette.yaml").write_text("classes: [x]\ncolors: [[0, 0, 0]]\ngsd_m: -1\n")
    with pytest.raises(ValueError, match="gsd_m"):
        FolderDataset(tmp_path)


def test_subset_and_exclusion_keep_names_and_refuse_empty(deepglobe_root: Path) -> None:
    from uhr_seg_ros.data.datasets import SubsetDataset, without_samples

    dataset = DeepGlobeDataset(deepglobe_root, "all")
    assert without_samples(dataset, ["2", "9"]).names == ["1", "3", "4"]
    subset = SubsetDataset(dataset, ["4"])
    assert subset[0].name == "4" and subset.gsd_m == 0.5
    with pytest.raises(ValueError, match="leaves no samples"):
        without_samples(dataset, dataset.names)
    with pytest.raises(FileNotFoundError, match="99"):
        SubsetDataset(dataset, ["99"])


def test_validate_names_every_bad_sample(deepglobe_root: Path) -> None:
    (deepglobe_root / "2_mask.png").unlink()  # missing mask
    _write_rgb(deepglobe_root / "3_mask.png", np.zeros((8, 16, 3), np.uint8))  # size mismatch
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255  # unknown colour
    _write_rgb(deepglobe_root / "4_mask.png", red)
    (deepglobe_root / "5_sat.jpg").write_bytes(b"not a jpeg")  # unreadable
    _write_rgb(deepglobe_root / "5_mask.png", red)
    dataset = DeepGlobeDataset(deepglobe_root)
    problems = dataset.validate()
    assert len(problems) == 4
    joined = "\n".join(problems)
    for fragment in (
        "2_sat.jpg: mask missing",
        "3_mask.png: size 16x8 does not match",
        "4_mask.png: 100.0% of pixels",
        "5_sat.jpg: unreadable image",
    ):
        assert fragment in joined
    assert dataset[0].name == "1"
    with pytest.raises(BadSampleError, match=r"2_sat\.jpg"):
        dataset[1]


def test_unknown_colour_tolerance(tmp_path: Path) -> None:
    _deepglobe_tile(tmp_path, "1", size=20)
    mask = cv2.imread(str(tmp_path / "1_mask.png"))
    mask[0, :1] = (0, 0, 255)  # one red pixel (BGR) in 400: 0.25 %
    cv2.imwrite(str(tmp_path / "1_mask.png"), mask)
    assert DeepGlobeDataset(tmp_path).validate() == []
    assert len(DeepGlobeDataset(tmp_path, max_unknown_fraction=0.001).validate()) == 1


def test_inria_flat_naming_matches_mask_size_and_fctl_split(tmp_path: Path) -> None:
    gt = np.zeros((24, 24), np.uint8)
    gt[:6] = 255
    for tile in ("austin29", "kitsap11"):
        _write_rgb(tmp_path / f"{tile}_rgb_24.png", np.full((24, 24, 3), 90, np.uint8))
        cv2.imwrite(str(tmp_path / f"{tile}_gt_24_DERIVED_nearest.png"), gt)
    cv2.imwrite(str(tmp_path / "austin29_gt_96.png"), np.zeros((96, 96), np.uint8))
    dataset = InriaDataset(tmp_path)
    assert dataset.names == ["austin29", "kitsap11"]
    assert dataset.validate() == []
    sample = dataset[0]
    assert sample.label.shape == (24, 24) and set(np.unique(sample.label)) == {0, 1}
    assert sample.label[:6].all() and not sample.label[6:].any()
    assert InriaDataset(tmp_path, "val").names == ["austin29"]  # FCtL validation tile
    assert InriaDataset(tmp_path, "train").names == ["kitsap11"]


def test_inria_official_layout_and_bad_values(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    _write_rgb(tmp_path / "images" / "vienna8.png", np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "gt" / "vienna8.png"), np.full((8, 8), 128, np.uint8))
    problems = InriaDataset(tmp_path).validate()
    assert len(problems) == 1
    assert "vienna8.png" in problems[0] and "outside the palette" in problems[0]


def test_folder_dataset_colour_and_id_masks(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "palette.yaml").write_text(
        "classes: [ground, tree, car]\ncolors: [[10, 20, 30], [0, 200, 0], [200, 0, 0]]\n"
        "ignore_colors: [[255, 255, 255]]\n"
    )
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[:] = (10, 20, 30)
    colour[0] = (0, 200, 0)
    colour[1, 0] = (255, 255, 255)
    _write_rgb(tmp_path / "images" / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    _write_rgb(tmp_path / "masks" / "a.png", colour)
    _write_rgb(tmp_path / "images" / "b.png", np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "b.png"), np.array([[0, 1, 2, 255]] * 4, np.uint8))
    dataset = FolderDataset(tmp_path)
    assert dataset.classes == ("ground", "tree", "car") and dataset.num_classes == 3
    label_a = dataset[0].label
    assert (label_a[0] == 1).all() and label_a[1, 0] == IGNORE_INDEX and (label_a[2:] == 0).all()
    np.testing.assert_array_equal(dataset[1].label[0], [0, 1, 2, 255])
    assert dataset.validate() == []


def test_folder_dataset_needs_a_valid_palette(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"palette\.yaml"):
        FolderDataset(tmp_path)
    (tmp_path / "palette.yaml").write_text("classes: [a, b]\ncolors: [[0, 0, 0]]\n")
    with pytest.raises(ValueError, match="2 classes and 1 colours"):
        FolderDataset(tmp_path)


def test_build_dataset_specs(deepglobe_root: Path) -> None:
    assert isinstance(build_dataset(f"deepglobe:{deepglobe_root}", "all"), DeepGlobeDataset)
    synthetic = build_dataset("synthetic:3@96x128", "val")
    assert isinstance(synthetic, SyntheticDataset) and len(synthetic) == 3
    assert synthetic[0].image.shape == (96, 128, 3)
    assert build_dataset("synthetic:3@96", "train").names != synthetic.names
    with pytest.raises(ValueError, match="KIND:ARG"):
        build_dataset("deepglobe")
    with pytest.raises(ValueError, match="unknown data set kind"):
        build_dataset("cityscapes:/x")
    with pytest.raises(ValueError, match="COUNT@SIZE"):
        build_dataset("synthetic:3")
    with pytest.raises(ValueError, match="split"):
        build_dataset("synthetic:1@64", "training")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset("inria:/nonexistent/folder")
    (deepglobe_root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"_sat\.jpg"):
        build_dataset(f"deepglobe:{deepglobe_root / 'empty'}", "all")


def test_synthetic_dataset_is_deterministic() -> None:
    first, second = SyntheticDataset(2, 64, seed=5), SyntheticDataset(2, 64, seed=5)
    np.testing.assert_array_equal(first[1].image, second[1].image)
    np.testing.assert_array_equal(first[1].label, second[1].label)
    assert not np.array_equal(first[0].image, first[1].image)
    with pytest.raises(IndexError):
        first[2]


@pytest.mark.data
def test_shared_deepglobe_tiles_parse(deepglobe_dir: Path) -> None:
    dataset = DeepGlobeDataset(deepglobe_dir)
    assert len(dataset) >= 1
    sample = dataset[0]
    assert sample.image.shape == (2448, 2448, 3) and sample.label.shape == (2448, 2448)
    assert set(np.unique(sample.label)) <= {0, 1, 2, 3, 4, 5, IGNORE_INDEX}
    splits = [DeepGlobeDataset(deepglobe_dir, s).names for s in ("train", "val", "test")]
    assert sorted(name for names in splits for name in names) == sorted(dataset.names)


def test_validate_command_lists_bad_files(
    deepglobe_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from uhr_seg_ros.cli import main

    assert main(["check-data", f"deepglobe:{deepglobe_root}"]) == 0
    (deepglobe_root / "3_mask.png").unlink()
    assert main(["check-data", f"deepglobe:{deepglobe_root}"]) == 1
    output = capsys.readouterr().out
    assert "3_sat.jpg: mask missing" in output and "3 of 4 samples ok" in output
