import pytest
import torch
import torch.nn.functional as F

from uhr_seg_ros.model.query import FourierOffsetEncoding, HighResQuery, nearest_cells


def _reference_nearest(source: torch.Tensor, query_size: tuple[int, int]) -> torch.Tensor:
    height, width = query_size
    ys = (2 * torch.arange(height, dtype=torch.float32) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float32) + 1) / width - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]  # (1, H, W, 2) x,y
    grid = grid.expand(source.shape[0], -1, -1, -1)
    return F.grid_sample(source, grid, mode="nearest", align_corners=False)


@pytest.mark.parametrize("seed", range(8))
def test_index_lookup_equals_grid_sample_nearest(seed):
    gen = torch.Generator().manual_seed(seed)
    src_h, src_w, q_h, q_w = (int(v) for v in torch.randint(1, 40, (4,), generator=gen))
    source = torch.randn(2, 5, src_h, src_w, generator=gen)
    rows, _ = nearest_cells(q_h, src_h)
    cols, _ = nearest_cells(q_w, src_w)
    picked = source.index_select(2, rows).index_select(3, cols)
    assert torch.equal(picked, _reference_nearest(source, (q_h, q_w)))


@pytest.mark.parametrize("query, source", [(8, 8), (8, 4), (40, 10), (7, 3)])
def test_offsets_are_relative_to_the_chosen_cell_in_cell_units(query, source):
    index, offset = nearest_cells(query, source)
    assert offset.dtype == torch.float32
    assert offset.abs().max() <= 1.0 + 1e-6
    centre = (2 * index.double() + 1) / source - 1
    q = (2 * torch.arange(query).double() + 1) / query - 1
    torch.testing.assert_close(offset.double(), (q - centre) * source, atol=1e-5, rtol=0)
    if query == source:
        assert torch.equal(index, torch.arange(query)) and offset.abs().max() < 1e-6


def test_positional_encoding_formula():
    enc = FourierOffsetEncoding(6)
    torch.testing.assert_close(enc.frequencies.data[0], 2.0 ** torch.linspace(0, 6, 6))
    assert enc.out_channels == 26
    offsets = torch.rand(2, 3, 4) * 2 - 1
    code = enc(offsets)
    assert code.shape == (26, 3, 4)
    dy, dx = offsets
    freqs = enc.frequencies.detach()
    sin = [torch.sin(w * dy) for w in freqs[0]] + [torch.sin(w * dx) for w in freqs[1]]
    cos = [torch.cos(w * dy) for w in freqs[0]] + [torch.cos(w * dx) for w in freqs[1]]
    expected = torch.stack([dy, dx, *sin, *cos])
    torch.testing.assert_close(code, expected)


def test_coordinates_stay_fp32_under_autocast():
    enc = FourierOffsetEncoding(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        code = enc(torch.rand(2, 4, 4))
    assert code.dtype == torch.float32


def test_query_mlp_input_width_and_output_grid():
    query = HighResQuery(embed_channels=8, num_classes=3, num_frequencies=6, hidden=(16,))
    assert query.mlp[0][0].in_channels == (8 + 26) + 2 * (3 + 26)
    out = query(torch.randn(2, 8, 2, 2), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8, 8), (8, 8))
    assert out.shape == (2, 3, 8, 8)
