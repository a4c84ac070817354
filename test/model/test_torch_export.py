import pytest
import torch

from uhr_seg_ros.model import load_checkpoint, save_checkpoint


@pytest.mark.slow
def test_torch_export_with_dynamic_batch_matches_eager(tiny_model, tmp_path):
    model = load_checkpoint(save_checkpoint(tmp_path / "m.pt", tiny_model))  # as deployed
    example = torch.rand(2, 3, 64, 96) * 255
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    exported = program.module()
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("grid_sampler" in op for op in ops)  # nearest-cell lookup is index_select
    assert not any(key.startswith("train_heads.") for key in program.state_dict)
    assert "memory.prototypes" in program.state_dict  # the frozen bank travels with the graph
    for size in (1, 3, 5):
        x = torch.rand(size, 3, 64, 96) * 255
        with torch.no_grad():
            expected = tiny_model(x)
        torch.testing.assert_close(exported(x), expected, rtol=1e-5, atol=1e-5)
