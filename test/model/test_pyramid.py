import torch
import torch.nn.functional as F

from uhr_seg_ros.model.pyramid import LaplacianInput


def test_channels_are_image_and_two_residual_levels():
    pyramid = LaplacianInput()
    x = torch.randn(2, 3, 32, 48)
    out = pyramid(x)
    assert out.shape == (2, 9, 32, 48)
    torch.testing.assert_close(out[:, :3], x)
    # Hand-built pyramid: binomial 5x5 blur (reflect), stride 2; bilinear up.
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = torch.outer(taps, taps).expand(3, 1, 5, 5)

    def down(t):
        return F.conv2d(F.pad(t, (2, 2, 2, 2), mode="reflect"), kernel, stride=2, groups=3)

    def up(t, size):
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    g1, g2 = down(x), down(down(x))
    torch.testing.assert_close(out[:, 3:6], x - up(g1, (32, 48)))
    torch.testing.assert_close(out[:, 6:9], up(g1 - up(g2, (16, 24)), (32, 48)))


def test_flat_image_has_no_residual_and_edges_light_up():
    pyramid = LaplacianInput()
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert pyramid(flat)[:, 3:].abs().max() < 1e-6
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 16:] = 1.0
    residual = pyramid(edge)[0, 3].abs()
    assert residual[:, 14:18].mean() > 10 * residual[:, :8].mean() + 1e-3
    # The blurred half-size level, worked out by hand from the binomial taps (1 4 6 4 1)/16:
    # window j covers input columns 2j-2..2j+2, so j=7 sees one lit column (1/16), j=8 three
    # (6+4+1)/16; rows are constant, so the vertical taps sum to 1.
    g1 = pyramid.down(edge)
    columns = torch.tensor([0.0] * 7 + [1 / 16, 11 / 16] + [1.0] * 7)
    torch.testing.assert_close(g1, columns.expand(1, 3, 16, 16))
