"""Context squeezing (SCPSeg's CSM): geometry, layout of the squeezed input, and that the
network's window logits really depend on the surroundings."""

from __future__ import annotations

import pytest
import torch

from uhr_seg_ros.model import ContextSpec, SCPSegConfig, build_model, squeeze_context


def test_reported_sizes():
    spec = ContextSpec(2.0, 0.75)  # G/L/D = 512/256/192 and 1024/512/384
    assert (spec.neighbourhood_side(256), spec.centre_side(256)) == (512, 192)
    assert (spec.neighbourhood_side(512), spec.centre_side(512)) == (1024, 384)
    with pytest.raises(ValueError):
        ContextSpec(1.0, 0.75)
    with pytest.raises(ValueError):
        ContextSpec(2.0, 1.0)


def test_each_region_lands_at_its_place_in_the_ring():
    spec, patch = ContextSpec(2.0, 0.75), 64
    m, r = spec.margin(patch), spec.ring(patch)
    g, d = patch + 2 * m, patch - 2 * r
    # A neighbourhood whose 3x3 regions hold the values 0..8 (row-major).
    region = torch.zeros(g, g)
    cuts = [0, m, m + patch, g]
    for i in range(3):
        for j in range(3):
            region[cuts[i] : cuts[i + 1], cuts[j] : cuts[j + 1]] = 3 * i + j
    out = squeeze_context(region.expand(1, 3, g, g).clone(), spec, patch)
    assert out.shape == (1, 3, patch, patch)
    places = [0, r, r + d, patch]
    for i in range(3):
        for j in range(3):
            block = out[0, :, places[i] + 1 : places[i + 1] - 1, places[j] + 1 : places[j + 1] - 1]
            torch.testing.assert_close(block, torch.full_like(block, 3.0 * i + j))


def test_out_buffer_is_written_in_place():
    spec, patch = ContextSpec(), 64
    n = torch.rand(2, 3, 128, 128) * 255
    out = torch.zeros(2, 3, patch, patch)
    assert squeeze_context(n, spec, patch, out=out) is out
    torch.testing.assert_close(out, squeeze_context(n, spec, patch))


def test_window_logits_depend_on_the_surroundings_but_read_out_the_centre():
    torch.manual_seed(0)
    model = build_model(SCPSegConfig.tiny(3)).eval()
    n = torch.rand(1, 3, 128, 128) * 255
    changed = n.clone()
    changed[..., :16, :] = 0.0  # only the context above the window
    with torch.inference_mode():
        a, b = model.forward_context(n), model.forward_context(changed)
    assert a.shape == (1, 3, 64, 64)
    assert not torch.allclose(a, b)  # the surroundings reach the window's prediction
    with pytest.raises(ValueError, match="neighbourhood"):
        model.forward_context(torch.zeros(1, 3, 100, 100))
