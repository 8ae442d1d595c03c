"""The MLP building block and its ``precision`` setting (hidden products in bfloat16)."""

import pytest
import torch

from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.nn import MLP, mlp, native_bfloat16, resolve_precision, set_hidden_dtype
from vardiu_pyro.validation import ConfigError, validate_config

from .configs import config as base_config

CPU = torch.device("cpu")


def test_mlp_layers_and_errors():
    net = mlp(3, 2, width=8, depth=3, activation="relu")
    assert isinstance(net, MLP)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU"] * 3 + ["Linear"]
    assert net(torch.randn(5, 3)).shape == (5, 2)
    with pytest.raises(ValueError, match="depth >= 1"):
        mlp(3, 2, width=8, depth=0)
    with pytest.raises(ValueError, match="unknown activation"):
        mlp(3, 2, width=8, depth=2, activation="swish")


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_bfloat16_hidden_layers_stay_close_and_float32_outside(depth):
    torch.manual_seed(0)
    net = mlp(2, 2, width=64, depth=depth, activation="relu")
    x = torch.randn(256, 2)
    reference = net(x)
    set_hidden_dtype(net, torch.bfloat16)
    y = net(x)
    assert y.dtype == torch.float32
    error = (y - reference).abs().max() / reference.abs().max()
    if depth == 1:  # no layer between two hidden ones: nothing changes
        assert error == 0
    else:  # bfloat16 keeps 8 bits: a relative error of a few 2^-9 per layer, never float32's 1e-7
        assert 1e-6 < error < 0.03
    y.square().sum().backward()
    for name, p in net.named_parameters():  # the parameters and their gradients stay float32
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32, name


def test_bfloat16_gradients_point_the_same_way():
    torch.manual_seed(1)
    net = mlp(2, 2, width=64, depth=4, activation="silu")
    x = torch.randn(512, 2)

    def grads():
        net.zero_grad()
        net(x).square().mean().backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    g32 = grads()
    set_hidden_dtype(net, torch.bfloat16)
    g16 = grads()
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.999
    assert not torch.equal(g32, g16)


def test_parameter_names_do_not_depend_on_precision():
    net = mlp(2, 2, width=8, depth=3)
    names = list(net.state_dict())
    set_hidden_dtype(net, torch.bfloat16)
    assert list(net.state_dict()) == names == list(torch.nn.Sequential(*net).state_dict())


def test_resolve_precision():
    assert resolve_precision("float32", CPU) is None
    assert resolve_precision("bfloat16", CPU) is torch.bfloat16
    assert resolve_precision("auto", CPU) is (torch.bfloat16 if native_bfloat16(CPU) else None)
    assert resolve_precision("auto", torch.device("cuda")) is None  # small networks: launches, not products
    with pytest.raises(ValueError, match="precision=half"):
        resolve_precision("half", CPU)


def config(*overrides):
    return base_config("trainer.iterations=10", "device=cpu", *overrides)


@pytest.mark.parametrize("guide", ["gaussian", "full_gaussian", "mixture", "flow"])
def test_precision_reaches_generator_and_guide(guide):
    problem = build_problem(config("precision=bfloat16", f"guide={guide}"), CPU)
    objective = build_objective(config("precision=bfloat16", f"guide={guide}"), problem)
    nets = objective.networks
    assert {m.hidden_dtype for m in nets["generator"].modules() if isinstance(m, MLP)} == {torch.bfloat16}
    assert {m.hidden_dtype for m in nets["guide"].modules() if isinstance(m, MLP)} == {torch.bfloat16}
    assert problem.teacher is not None  # the teacher is not ours to round
    for _ in range(3):
        loss = objective.step(0)["loss"]
    assert torch.isfinite(torch.as_tensor(loss))


def test_float32_is_the_exact_network():
    problem = build_problem(config("precision=float32"), CPU)
    assert all(m.hidden_dtype is None for m in problem.generator.modules() if isinstance(m, MLP))


def test_bad_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision=half"):
        validate_config(config("precision=half"))
