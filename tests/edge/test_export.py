import numpy as np
import onnx
import pytest
import torch

from lepton.edge.export import export_onnx, max_abs_diff, onnx_session, run_session
from lepton.errors import ConfigError


def test_onnx_matches_torch_on_real_images(trained, mnist, tmp_path):
    model, spec, _ = trained
    report = export_onnx(model, tmp_path / "m.onnx", input_shape=spec.input_shape)
    assert report.bytes == (tmp_path / "m.onnx").stat().st_size > 1_700_000  # 431,080 fp32 weights
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    x, y = mnist.tensors("test")
    session = onnx_session(tmp_path / "m.onnx")
    assert max_abs_diff(model, session, x[:500]) < 1e-4
    with torch.no_grad():
        assert (run_session(session, x[:500].numpy()).argmax(1) == model(x[:500]).argmax(1).numpy()).all()


def test_batch_axis_is_dynamic(trained, mnist, tmp_path):
    model, spec, _ = trained
    export_onnx(model, tmp_path / "m.onnx", input_shape=spec.input_shape)
    session = onnx_session(tmp_path / "m.onnx")
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_outputs()[0].name == "logits"
    x = mnist.tensors("test")[0][:7].numpy()
    one = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(7)])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], one, atol=1e-5)


def test_bad_arguments_are_refused_and_leave_no_file(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(ConfigError, match="input_shape"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(28, 28))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 28, 28), opset=7)
    with pytest.raises(ConfigError, match="cannot export"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 28, 28))  # conv1 expects one channel
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="does not exist"):
        onnx_session(tmp_path / "missing.onnx")
