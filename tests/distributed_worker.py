"""Processes of the tests of ``DataParallel.average_gradients`` over two ranks (their own module: children import
little)."""

import torch
import torch.distributed as dist

from vardiu_pyro.distributed import DataParallel


def average_on_two_ranks(rank: int, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(3)]
    params[0].grad = torch.full((3,), float(rank + 1))  # 1 and 2: mean 1.5
    if rank == 1:
        params[1].grad = torch.full((3,), 4.0)  # missing on rank 0: counts as zero there, mean 2
    DataParallel(rank=rank, world_size=2, device=torch.device("cpu"), backend="gloo").average_gradients(params)
    torch.save([p.grad for p in params], f"{out}.{rank}")
    dist.destroy_process_group()


def average_with_a_dropped_rank(rank: int, rendezvous: str, out: str) -> None:
    """Rank 1 dropped its step (no gradient at all, as after a non-finite loss); rank 0 did not."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    if rank == 0:
        params[0].grad = torch.ones(3)
    DataParallel(rank=rank, world_size=2, device=torch.device("cpu"), backend="gloo").average_gradients(params)
    torch.save([p.grad for p in params], f"{out}.{rank}")
    dist.destroy_process_group()
