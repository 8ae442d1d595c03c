"""Data-parallel training over the processes of a ``torchrun`` launch (``trainer.distributed=true``).

    torchrun --nproc_per_node=N -m vardiu_pyro.fit trainer.distributed=true ...

DDP semantics, done in the optimiser rather than by ``DistributedDataParallel``: Pyro's SVI calls
``loss_and_grads`` and steps a ``PyroOptim`` itself, which bypasses DDP's autograd hooks. So:

- every rank builds the same networks from the same seed, and rank 0's values are broadcast to
  all (parameters and buffers) so that they start identical whatever the initialisation;
- every rank then draws its own noise (z, σ, ε): the sampling RNG is re-seeded with
  ``rank_seed(seed, rank)``; ``trainer.batch_size`` is the batch of *each* rank;
- every optimiser of the objective (``objective.optimizers()``, each a ``PerNetworkOptim``)
  averages the gradients over the ranks, in one flat all-reduce per step with the parameters in
  a fixed order (networks by name, then module order, as ``pyro.optim.HorovodOptimizer`` sorts
  by name), *before* it clips and steps. Every rank then takes the same step, so the networks
  stay identical without further communication; this works for any objective;
- only rank 0 evaluates, logs, plots and checkpoints; the others write nothing at all (Hydra's
  own files and log included: see ``secondary_rank_overrides``);
- every rank runs the same loop and takes its decisions alike: checkpoints (every rank's random
  state is gathered into rank 0's checkpoint, so a resumed run continues each rank's own noise
  exactly), a stop on SIGINT/SIGTERM (the ranks agree on it after every iteration: one rank
  signalled stops them all at the same iteration), and a stop after too many non-finite steps
  (the gradients are averaged before the finiteness check, so every rank skips alike).

Backends: gloo on CPU, nccl on CUDA (one GPU per rank: ``cuda:LOCAL_RANK``). Nothing here is
used, nor ``torch.distributed`` initialised, unless ``trainer.distributed=true``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyro
import torch
from torch import nn

__all__ = ["DataParallel", "rank_seed", "secondary_rank_overrides", "torchrun_world_size", "RANK_SEED_STRIDE"]

# seed + stride * rank: ranks of one run never share a stream, nor (for seeds 0..65535) ranks of
# runs whose seeds differ by a few, as ``seed + rank`` would (seed 0 rank 1 = seed 1 rank 0).
RANK_SEED_STRIDE = 2**16


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's sampling RNG: ``seed + 65536 * rank`` (rank 0 keeps ``seed``)."""
    return int(seed) + RANK_SEED_STRIDE * int(rank)


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 outside a launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def secondary_rank_overrides() -> list[str]:
    """Hydra overrides that keep ranks > 0 of a torchrun launch from writing anything.

    Each rank runs Hydra and would resolve ``${now:...}`` to its own run directory, with its own
    ``.hydra/`` and log file. Ranks > 0 get none: no ``.hydra/``, no log file, the working
    directory as a nominal run directory. Rank 0 alone resolves the run directory, and
    ``DataParallel`` broadcasts it, so all ranks agree on it. Empty outside torchrun and on rank 0.
    """
    if torchrun_world_size() <= 1 or int(os.environ.get("RANK", "0")) == 0:
        return []
    return ["hydra.run.dir=.", "hydra.sweep.dir=.", "hydra.sweep.subdir=.", "hydra.output_subdir=null",
            "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


@dataclass
class DataParallel:
    """This process's place in a data-parallel run; made by ``DataParallel.start(device)``."""

    rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> DataParallel:
        """Join the process group of a torchrun launch (gloo on CPU, nccl on CUDA)."""
        import torch.distributed as dist

        missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"trainer.distributed=true: launch with torchrun --nproc_per_node=N -m vardiu_pyro.fit "
                               f"(the environment lacks {', '.join(missing)})")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend)
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device, backend=backend)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def prepare(self, objective, seed: int) -> None:
        """Make rank 0's networks everyone's, average gradients in every optimiser, seed this rank's noise."""
        from .optim import PerNetworkOptim

        self.broadcast_modules(objective.networks)
        for name, optim in objective.optimizers().items():
            if not isinstance(optim, PerNetworkOptim):
                raise TypeError(f"trainer.distributed=true needs every optimiser to be a PerNetworkOptim; "
                                f"optimiser {name!r} is a {type(optim).__name__}")
            optim.reduce_gradients = self.average_gradients
        pyro.set_rng_seed(rank_seed(seed, self.rank))

    @torch.no_grad()
    def broadcast_modules(self, modules: Mapping[str, nn.Module]) -> None:
        """Overwrite every parameter and buffer with rank 0's (modules by name, then module order)."""
        import torch.distributed as dist

        for name in sorted(modules):
            for tensor in [*modules[name].parameters(), *modules[name].buffers()]:
                dist.broadcast(tensor.data, src=0)

    @torch.no_grad()
    def average_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each ``p.grad`` by its mean over the ranks, in one all-reduce.

        ``params`` must be the same tensors in the same order on every rank. A gradient missing on
        some ranks counts as zero there; one missing on every rank stays missing (``None``), so
        the optimiser skips that parameter as it would in a single process. A rank with no gradient
        at all dropped its step (its loss was not finite: ``VarDiUELBO.loss_and_grads`` then skips the
        backward pass): it counts as NaN, so that the mean is NaN on every rank and every rank's
        optimiser skips the step and counts it, as one process would.
        """
        import torch.distributed as dist

        if not params:
            return
        present = torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=params[0].device)
        dropped = not present.any()
        grads = [p.grad if p.grad is not None else torch.full_like(p, math.nan) if dropped else torch.zeros_like(p)
                 for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [present])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size  # the mean of the ranks' mean losses: the mean over world_size * batch_size samples
        present = flat[-len(params):] > 0
        offset = 0
        for p, g, has_grad in zip(params, grads, present.tolist()):
            n = p.numel()
            p.grad = g.copy_(flat[offset:offset + n].view_as(g)) if has_grad else None
            offset += n

    def gather_object(self, obj) -> list | None:
        """Every rank's ``obj`` (picklable), as a list by rank, on rank 0; None on the others."""
        import torch.distributed as dist

        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def max_over_ranks(self, value: int) -> int:
        """The largest of the ranks' ``value`` (an int), on every rank: how ranks agree to stop."""
        import torch.distributed as dist

        box = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        return int(box.item())

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` (any picklable value), on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
