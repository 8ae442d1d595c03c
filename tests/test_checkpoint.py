import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from vardiu_pyro.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state


def test_round_trip_keeps_structure_and_key_types(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"net": net.state_dict(), "optim": opt.state_dict(), "iteration": 7, "note": None,
             "pair": (1.5, "a"), "rng": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "ckpt.safetensors", state)
    back = load_checkpoint(path)
    assert back["iteration"] == 7 and back["note"] is None and back["pair"] == (1.5, "a")
    assert set(back["optim"]["state"]) == {0, 1}  # int keys survive
    assert torch.equal(back["rng"], state["rng"])
    new = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    new.load_state_dict(back["optim"])
    for k, v in net.state_dict().items():
        assert torch.equal(back["net"][k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temporary left behind


def test_refuses_foreign_files(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a vardiu-pyro checkpoint"):
        load_checkpoint(path)


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(3)})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("vardiu_pyro.checkpoint.save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"a": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(3))
    assert os.listdir(tmp_path) == ["c.safetensors"]


def test_unsupported_values_are_rejected():
    with pytest.raises(TypeError, match="object"):
        flatten_state({"x": object()})
    skeleton, tensors = flatten_state([1, {"b": torch.ones(1)}])
    assert unflatten_state(skeleton, tensors)[1]["b"].item() == 1.0


def test_a_checkpoint_has_the_permissions_of_the_run_s_other_files(tmp_path):
    """Group members of a shared cluster can read (and resume from) it as from metrics.jsonl: not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ckpt.safetensors", {"x": torch.zeros(2)})
        (tmp_path / "other").write_text("")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ckpt.safetensors").stat().st_mode) == stat.S_IMODE((tmp_path / "other").stat().st_mode) == 0o644
