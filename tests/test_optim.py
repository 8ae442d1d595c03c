import pyro
import pytest
import torch
from torch import nn

from vardiu_pyro.optim import PerNetworkOptim, clipped_step, lr_factor


def nets():
    torch.manual_seed(0)
    return {"a": nn.Linear(4, 4), "b": nn.Linear(4, 1)}


def test_each_network_is_clipped_on_its_own():
    n = nets()
    for net, scale in ((n["a"], 100.0), (n["b"], 1e-3)):
        for p in net.parameters():
            p.grad = torch.full_like(p, scale)
    grads_b = [p.grad.clone() for p in n["b"].parameters()]
    opt = PerNetworkOptim(n, optimizer="sgd", lr=1.0, max_grad_norm=1.0)
    before = {k: [p.detach().clone() for p in v.parameters()] for k, v in n.items()}
    opt([p for v in n.values() for p in v.parameters()])
    step_a = torch.cat([(b - p.detach()).flatten() for b, p in zip(before["a"], n["a"].parameters())])
    step_b = torch.cat([(b - p.detach()).flatten() for b, p in zip(before["b"], n["b"].parameters())])
    assert step_a.norm().item() == pytest.approx(1.0, rel=1e-5)  # clipped to norm 1
    assert torch.allclose(step_b, torch.cat([g.flatten() for g in grads_b]))  # small: untouched
    assert float(opt.last_grad_norms["a"]) > 100
    assert all(p.grad is None for v in n.values() for p in v.parameters())


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("max_norm", [0.5, 1e4])  # clipped, and not
def test_clipped_step_is_clip_grad_norm_then_step(name, fused, dtype, max_norm):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)
    ref = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)
    ref.load_state_dict(net.state_dict())
    start = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(16, 3, dtype=dtype)
    kwargs = {"lr": 1e-4, "fused": fused} | ({} if name == "sgd" else {"eps": 1.0})  # eps: Adam sees the gradient's scale
    opt = OPTIMIZERS[name](net.parameters(), **kwargs)
    ref_opt = OPTIMIZERS[name](ref.parameters(), **kwargs)
    for _ in range(3):
        for n in (net, ref):
            n.zero_grad()
            (100 * n(x).square().sum()).backward()
        params = list(net.parameters())
        norm = nn.utils.get_total_norm([p.grad for p in params])
        clipped_step(opt, params, max_norm, norm)
        ref_norm = nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
        ref_opt.step()
        assert (float(norm) > max_norm) == (max_norm == 0.5)
        assert float(norm) == pytest.approx(float(ref_norm), rel=1e-6)
        assert not hasattr(opt, "grad_scale")
        for a, b in zip(net.parameters(), ref.parameters()):  # the fused way rounds the factor to float32
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert all(not torch.equal(p, p0) for p, p0 in zip(net.parameters(), start))  # every parameter was stepped


def test_clipped_step_without_a_norm_or_a_maximum_is_a_plain_step():
    torch.manual_seed(0)
    for max_norm, norm in ((None, torch.tensor(5.0)), (1.0, None)):
        p = nn.Parameter(torch.zeros(3))
        p.grad = torch.full((3,), 10.0)
        clipped_step(torch.optim.SGD([p], lr=1.0), [p], max_norm, norm)
        assert torch.equal(p.detach(), torch.full((3,), -10.0))


def test_stray_parameters_are_an_error():
    opt = PerNetworkOptim(nets())
    with pytest.raises(RuntimeError, match="param store"):
        opt([nn.Parameter(torch.zeros(2))])


def test_state_round_trip_and_lr_schedule():
    n = nets()
    opt = PerNetworkOptim(n, lr=0.1, lr_overrides={"b": 0.01}, schedule="cosine", iterations=10, end_factor=0.0)
    params = [p for v in n.values() for p in v.parameters()]
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt(params)
    assert opt.optimizers["b"].param_groups[0]["lr"] == pytest.approx(0.01 * lr_factor(2, "cosine", 10))
    state = opt.get_state()
    other = PerNetworkOptim(nets(), lr=0.1, lr_overrides={"b": 0.01}, schedule="cosine", iterations=10)
    other.set_state(state)
    assert other.num_steps == 3
    assert torch.equal(other.optimizers["a"].state_dict()["state"][0]["exp_avg"],
                       opt.optimizers["a"].state_dict()["state"][0]["exp_avg"])


def test_lr_factor_shapes():
    assert lr_factor(0, "constant", 100) == 1.0
    assert lr_factor(0, "cosine", 100, end_factor=0.1) == pytest.approx(1.0)
    assert lr_factor(100, "cosine", 100, end_factor=0.1) == pytest.approx(0.1)
    assert lr_factor(50, "linear", 100) == pytest.approx(0.5)
    assert lr_factor(4, "cosine", 100, warmup=10) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs,match", [({"optimizer": "lbfgs"}, "optimizer"), ({"schedule": "step"}, "schedule"),
                                          ({"lr": 0.0}, "lr"), ({"lr_overrides": {"c": 1.0}}, "unknown networks"),
                                          ({"max_grad_norm": -1.0}, "max_grad_norm"), ({"max_grad_norm": 0.0}, "max_grad_norm")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerNetworkOptim(nets(), **kwargs)


def test_is_a_pyro_optim():
    assert isinstance(PerNetworkOptim(nets()), pyro.optim.PyroOptim)


def test_reduce_gradients_sees_every_parameter_in_a_fixed_order_before_clipping():
    n = nets()
    params = [p for v in n.values() for p in v.parameters()]
    for p in params:
        p.grad = torch.ones_like(p)
    seen = []

    def scale_by_1000(group):  # stands in for the all-reduce of data-parallel training
        seen.extend(group)
        for p in group:
            p.grad *= 1000

    opt = PerNetworkOptim({"b": n["b"], "a": n["a"]}, optimizer="sgd", lr=1.0, max_grad_norm=1.0)
    opt.reduce_gradients = scale_by_1000
    before = [p.detach().clone() for p in n["a"].parameters()]
    opt(list(reversed(params)))
    assert seen == [*n["a"].parameters(), *n["b"].parameters()]  # networks by name, then module order
    assert float(opt.last_grad_norms["a"]) == pytest.approx(1000 * 20 ** 0.5)  # reduced, then clipped
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, n["a"].parameters())])
    assert step.norm().item() == pytest.approx(1.0, rel=1e-5)
