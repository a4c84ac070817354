import pytest
import torch


@pytest.mark.slow
def test_torch_export_with_dynamic_batch_matches_eager(tiny_model):
    example = torch.rand(2, 3, 64, 96) * 255
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.export.export(tiny_model, (example,), dynamic_shapes={"x": {0: batch}})
    exported = program.module()
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("grid_sampler" in op for op in ops)  # nearest-cell lookup is index_select
    for size in (1, 3, 5):
        x = torch.rand(size, 3, 64, 96) * 255
        with torch.no_grad():
            expected = tiny_model(x)
        torch.testing.assert_close(exported(x), expected, rtol=1e-5, atol=1e-5)
