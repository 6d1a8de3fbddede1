"""FID through PyTorch-Ignite with a pluggable feature network: identical sets give ~0, the weights file
is a TorchScript module or a pytorch-fid Inception state dict, and without one FID is skipped politely."""

import pytest
import torch
from torch import nn

from deqslots.evaluation.fid import FID_HOWTO, FIDScore, fid_scorer, load_feature_extractor
from deqslots.evaluation.inception import FIDInceptionV3, load_fid_inception

pytest.importorskip("ignite", reason="FID needs pytorch-ignite (pip install -e '.[fid]')")


def random_features(out=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, out)).eval()


def batches(n=4, size=32, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(size, 3, 16, 16, generator=g) * (1 - shift) + shift) for _ in range(n)]


def test_identical_sets_give_zero_and_different_sets_do_not():
    same = FIDScore(random_features())
    for x in batches():
        same.update(x, x)
    assert same.count == 128 and same.num_features == 8
    assert abs(same.compute()) < 1e-5
    darker = FIDScore(random_features())
    for x in batches():
        darker.update(x, 0.3 * x)
    assert darker.compute() > 1e-3  # the random features are small: 1e-3 is far above round-off (~1e-19)


def test_fid_matches_the_closed_form_on_the_features():
    net = random_features(out=4)
    real, fake = torch.cat(batches()), torch.cat(batches(seed=1, shift=0.3))
    fid = FIDScore(net)
    fid.update(real, fake)
    with torch.no_grad():
        a, b = net(real).double(), net(fake).double()
    import scipy.linalg

    ca, cb = torch.cov(a.T), torch.cov(b.T)
    root = torch.from_numpy(scipy.linalg.sqrtm((ca @ cb).numpy()).real)
    expected = (a.mean(0) - b.mean(0)).pow(2).sum() + torch.trace(ca + cb - 2 * root)
    assert fid.compute() == pytest.approx(float(expected), rel=1e-4)


def test_torchscript_feature_extractor_file(tmp_path):
    path = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(random_features()), str(path))
    net = load_feature_extractor(path)
    x = batches(1)[0]
    assert torch.allclose(net(x), random_features()(x), atol=1e-6)


def test_exported_program_feature_extractor_file(tmp_path):
    net = random_features()
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(net, (torch.rand(4, 3, 16, 16),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "features.pt2"))
    loaded = load_feature_extractor(tmp_path / "features.pt2")
    x = batches(1)[0]
    assert torch.allclose(loaded(x), net(x), atol=1e-6)
    fid = FIDScore(loaded)
    fid.update(x, x)
    assert abs(fid.compute()) < 1e-5


def test_inception_state_dict_file_loads_into_the_local_network(tmp_path):
    torch.manual_seed(0)
    source = FIDInceptionV3()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["AuxLogits.fc.weight"] = torch.zeros(1)  # some exports carry the auxiliary head: ignored
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path)
    net = load_feature_extractor(path)
    assert isinstance(net, FIDInceptionV3) and not net.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        features = net(x)
        assert features.shape == (1, 2048)
        assert torch.allclose(features, source(x), atol=1e-5)


def test_bad_weights_files_are_explained(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no FID weights file"):
        load_feature_extractor(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(ValueError, match="could not read FID weights"):
        load_feature_extractor(tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a pytorch-fid Inception-v3 state dict"):
        load_feature_extractor(tmp_path / "other.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        load_feature_extractor(tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a pytorch-fid"):
        load_fid_inception({})
    assert fid_scorer(None) is None
    assert "pass --fid-weights PATH" in capsys.readouterr().out and "pass --fid-weights" in FID_HOWTO


def test_update_errors():
    fid = FIDScore(random_features())
    with pytest.raises(ValueError, match="at least 2 images"):
        fid.compute()
    with pytest.raises(ValueError, match="as many generated as real"):
        fid.update(torch.rand(4, 3, 16, 16), torch.rand(3, 3, 16, 16))
    flat = FIDScore(nn.Identity())
    with pytest.raises(ValueError, match=r"must return \[batch, features\]"):
        flat.update(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
