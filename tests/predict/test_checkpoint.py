import pickle

import numpy as np
import pytest
import torch

from geoseg.errors import CheckpointError
from geoseg.predict.checkpoint import import_state_dict, init_checkpoint, load_checkpoint, read_spec
from geoseg.predict.engine import Predictor
from geoseg.predict.models import FCN, build_model


@pytest.mark.parametrize("arch", ["unet", "fpn", "deeplabv3plus", "fcn", "fcn4s"])
def test_every_architecture_builds_and_predicts_full_resolution(arch):
    model = build_model(arch, "resnet18", in_channels=4, classes=6).eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 4, 64, 96))
    assert out.shape == (1, 6, 64, 96)


def test_fcn_uses_stride_8_16_32_scores():
    m = FCN("resnet18", in_channels=3, classes=6)
    assert [m.score8.in_channels, m.score16.in_channels, m.score32.in_channels] == [128, 256, 512]
    assert m.score8.kernel_size == (1, 1)


def test_unknown_architecture_lists_choices():
    with pytest.raises(KeyError, match="unet, fpn, deeplabv3plus, fcn"):
        build_model("segformer", "resnet18", in_channels=3, classes=6)


def test_checkpoint_is_self_describing(tmp_path):
    path = tmp_path / "m.pt"
    spec = init_checkpoint(path, arch="unet", encoder="resnet18", in_channels=4, seed=3, tile_size=256, gsd=0.1)
    assert read_spec(path) == spec
    assert spec.bands == ("red", "green", "blue", "nir") and spec.tile_size == 256 and spec.gsd == 0.1
    model, spec2 = load_checkpoint(path)
    assert spec2.num_classes == 6 and not model.training
    raw = torch.load(path, weights_only=True)  # loads with the safe unpickler: no code objects inside
    assert set(raw) == {"geoseg_checkpoint", "spec", "state_dict"}


def test_import_plain_state_dict_round_trips(tmp_path):
    model = build_model("fpn", "resnet18", in_channels=3, classes=6).eval()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "sd.pt")
    spec = import_state_dict(
        tmp_path / "sd.pt",
        tmp_path / "wrapped.pt",
        arch="fpn",
        encoder="resnet18",
        in_channels=3,
        mean=(0, 0, 0),
        std=(255, 255, 255),
    )
    assert spec.mean == (0.0, 0.0, 0.0)
    x = (np.random.default_rng(0).random((1, 3, 64, 64)) * 255).astype(np.uint8)
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(x).float() / 255), 1).numpy()
    got = Predictor(tmp_path / "wrapped.pt", device="cpu", precision="fp32").predict(x)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_import_refuses_mismatched_weights(tmp_path):
    torch.save(build_model("unet", "resnet18", in_channels=3, classes=6).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="does not fit unet/resnet34"):
        import_state_dict(
            tmp_path / "sd.pt",
            tmp_path / "x.pt",
            arch="unet",
            encoder="resnet34",
            in_channels=3,
            mean=(0, 0, 0),
            std=(1, 1, 1),
        )


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a geoseg checkpoint"):
        read_spec(tmp_path / "junk.pt")
    torch.save(build_model("fcn", "resnet18", in_channels=3, classes=6).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain state_dict.*geoseg model import"):
        read_spec(tmp_path / "plain.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"geoseg_checkpoint": 1, "x": Evil()}, f)
    torch.save({"geoseg_checkpoint": 1, "spec": "{}", "obj": Evil()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(CheckpointError):
            read_spec(tmp_path / name)
    assert "must never run" not in capsys.readouterr().out


def test_a_failing_compiler_falls_back_to_the_eager_model(monkeypatch, caplog, fcn_model):
    """--compile on a machine whose compiler fails: same probabilities as without it, and a warning."""

    def broken(model, **kw):
        def call(x):
            raise RuntimeError("InductorError: no working C++ compiler\ndetails...")

        return call

    x = (np.random.default_rng(0).random((2, 3, 64, 64)) * 255).astype(np.uint8)
    eager = Predictor(fcn_model, device="cpu", precision="fp32").predict(x)
    monkeypatch.setattr(torch, "compile", broken)
    p = Predictor(fcn_model, device="cpu", precision="fp32", compile=True)
    assert p.compiled
    with caplog.at_level("WARNING", logger="geoseg.predict.engine"):
        got = p.predict(x)
    assert not p.compiled
    np.testing.assert_array_equal(got, eager)
    assert "torch.compile failed, running the model eagerly: InductorError: no working C++ compiler" in caplog.text


@pytest.mark.slow
def test_compiled_model_agrees_with_the_eager_one(tmp_path, fcn_model):
    """A real torch.compile (TorchInductor, C++ on CPU): the first pass compiles, results match eager."""
    x = (np.random.default_rng(1).random((2, 3, 128, 128)) * 255).astype(np.uint8)
    eager = Predictor(fcn_model, device="cpu", precision="fp32").predict(x)
    p = Predictor(fcn_model, device="cpu", precision="fp32", compile=True)
    got = p.predict(x)
    assert p.compiled  # compiled, not fallen back
    np.testing.assert_allclose(got, eager, atol=1e-4)
    assert (got.argmax(1) == eager.argmax(1)).mean() > 0.999
