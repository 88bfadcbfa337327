"""Data-parallel ``jprefs rl`` runs: ``torchrun --nproc_per_node N -m jprefs.cli rl ...``
(or ``accelerate launch --multi_gpu --num_processes N``; without ``--multi_gpu`` accelerate starts
one process where fewer than 2 GPUs are visible, and :mod:`jprefs.launch` says so).

One :class:`Dist` per process and run, from :func:`get_dist`:

- **One process** (plain ``jprefs rl``; ``WORLD_SIZE`` unset or 1): no accelerate, no process
  group; every method is the identity (``wrap`` returns the module, ``gather`` the tensor,
  ``mean`` the dict), so a one-process run computes exactly what it did before.
- **N processes** (``accelerate launch`` / ``torchrun`` set ``WORLD_SIZE > 1``): an
  ``accelerate.Accelerator`` sets up the process group (NCCL on GPUs, gloo on CPUs) and gives
  each process its device. The trained modules are wrapped in ``DistributedDataParallel``
  (gradients all-reduced during backward); forwards without gradients (sampling, reference and
  reward scoring) use the plain module, so processes may run them a different number of times.
  Metrics are gathered or averaged over processes; only the main process writes files.

Example::

    dist = get_dist(cfg)
    ddp_model = dist.wrap(model)                 # train through ddp_model, sample with model
    stats = dist.mean(stats)                     # the same numbers on every process
"""

from __future__ import annotations

import hashlib
import os
from typing import Sequence


def world_size_from_env() -> int:
    """The process count a launcher set (``WORLD_SIZE``); 1 without a launcher."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class Dist:
    """Process-group view of a run: rank, world size, device, and the few collectives it needs."""

    def __init__(self, accelerator=None):
        self.acc = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.world = accelerator.num_processes if accelerator is not None else 1
        self.is_main = self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def device(self, name: str = "auto"):
        """``cfg.device`` in one process; the launcher's device (``cuda:LOCAL_RANK`` or cpu) in N."""
        from jprefs.rl.device import resolve_device

        return resolve_device(name) if self.acc is None else self.acc.device

    # ------------------------------------------------------------------ modules

    def wrap(self, module):
        """``module`` for training: DDP over the process group when N > 1, else unchanged.

        Buffers are not synced at every forward (``forward_sync_buffers`` / ``broadcast_buffers``
        False: a collective per forward would deadlock if processes forwarded different numbers
        of times); DDP still broadcasts rank 0's parameters once, here.
        """
        if not self.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        dev = self.acc.device
        # newer torch renamed the flag (and deprecated the old name)
        no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else "broadcast_buffers")
        return DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                                       **{no_sync: False})

    @staticmethod
    def unwrap(module):
        """The plain module under a DDP wrapper (for sampling, Polyak sync, saving)."""
        return getattr(module, "module", module) if type(module).__name__ == "DistributedDataParallel" else module

    def sync_module(self, module) -> None:
        """Copy rank 0's parameters and buffers to every process (in place)."""
        if not self.enabled:
            return
        import torch

        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(t.data, src=0)

    def share(self, block, per_process: int):
        """This process's ``per_process`` items of a block of ``N * per_process`` that every
        process drew alike (same generator state): process r takes items ``r*k .. r*k+k-1``.

        >>> Dist().share([3, 1, 4, 1], 4)      # one process: the whole block
        [3, 1, 4, 1]
        """
        return block[self.rank * per_process:(self.rank + 1) * per_process]

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        if self.enabled:
            import torch

            torch.distributed.barrier()

    def gather(self, t):
        """Concatenate a tensor's dim 0 over processes (each must hold the same shape)."""
        if not self.enabled:
            return t
        return self.acc.gather(t.contiguous())

    def sum(self, t):
        """All-reduce sum of a tensor (returns a new tensor)."""
        if not self.enabled:
            return t
        import torch

        t = t.detach().clone()
        torch.distributed.all_reduce(t)
        return t

    def mean(self, stats: dict[str, float]) -> dict[str, float]:
        """Average a dict of floats over processes (every process must hold the same keys)."""
        if not self.enabled:
            return stats
        import torch

        keys = sorted(stats)
        got = self.gather_object(keys)
        if any(k != keys for k in got):
            raise RuntimeError(f"processes logged different metric keys: {got}")
        t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=self.acc.device)
        torch.distributed.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist())}

    def gather_object(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every process (picklable objects)."""
        if not self.enabled:
            return [obj]
        import torch

        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the process group after the run's last collective (every process calls it; the
        main process then writes the outputs alone). Exiting with the group still open can abort
        a process at shutdown."""
        if self.enabled:
            import torch

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def check_same(self, value, what: str) -> None:
        """Raise on every process when ``value`` differs between processes."""
        vals = self.gather_object(value)
        if any(v != vals[0] for v in vals):
            from jprefs.errors import JprefsError

            raise JprefsError(f"data-parallel processes disagree on {what}: {vals}")


def get_dist(cfg=None) -> Dist:
    """The run's :class:`Dist`: accelerate's process group under a launcher, else a one-process view."""
    if world_size_from_env() <= 1:
        from jprefs.launch import single_process_note

        note = single_process_note("rl")          # `accelerate launch --num_processes N` that started one
        if note:
            import sys

            print(note, file=sys.stderr)
        return Dist(None)
    import torch

    from accelerate import Accelerator

    from jprefs.errors import JprefsError

    # CPU processes (gloo) for device=cpu or where no GPU exists: a plain Accelerator() on a
    # CPU-only machine does not join the launcher's processes (each would train alone).
    cpu = (cfg is not None and str(getattr(cfg, "device", "auto")) == "cpu") or not torch.cuda.is_available()
    acc = Accelerator(cpu=cpu)
    if acc.num_processes != world_size_from_env():
        raise JprefsError(f"WORLD_SIZE={world_size_from_env()} but accelerate set up {acc.num_processes} "
                          f"process(es) ({acc.distributed_type}).\n  fix: launch with `accelerate launch "
                          f"--multi_gpu --num_processes N -m jprefs.cli rl ...` or `torchrun --nproc_per_node N -m jprefs.cli rl ...`")
    return Dist(acc)


def end_process(rc: int = 0) -> None:
    """End a data-parallel process whose run is done (``Dist.close`` called, files written):
    flush stdio and ``os._exit(rc)``, skipping the interpreter's teardown.

    That teardown is where torch's gloo threads can abort a process that has finished its run
    (SIGABRT, "terminate called without an active exception", no Python frame left): measured
    in 1 of 48 two-process CPU SFT runs on 2 busy cores, and in a CI run, where the launcher
    then reported the finished run as failed. Every output file is written (atomically) and
    closed before this point, so nothing that teardown would do is lost.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


def weights_digest(modules: Sequence) -> str:
    """A short fingerprint of the parameters of ``modules``: per tensor, float64 sum and sum of
    squares, hashed. Processes that stayed in sync give the same digest; so does the same
    policy loaded back from its safetensors.

    >>> weights_digest([torch.nn.Linear(2, 2)])   # doctest: +SKIP
    '3f1c...'
    """
    import torch

    parts = []
    with torch.no_grad():
        for m in modules:
            for name, p in m.named_parameters():
                x = p.detach().double()
                parts.append(torch.stack([x.sum(), (x * x).sum()]))
                parts.append(torch.tensor([float(len(name))], dtype=torch.float64, device=x.device))
    blob = torch.cat(parts).cpu().numpy().tobytes() if parts else b""
    return hashlib.sha256(blob).hexdigest()[:16]


def data_parallel_record(dist, policy_digests, **per_rank) -> dict:
    """``summary["data_parallel"]`` of an N-process run: the process count and, per process, a
    digest of its final weights (and any other per-process values given) -- all equal when the
    processes stayed in sync; a warning on stderr when they did not."""
    from jprefs.data.io import eprint

    rec = {"processes": dist.world, "policy_digests": policy_digests, **per_rank}
    rec["in_sync"] = all(len(set(map(str, v))) == 1 for k, v in rec.items() if k != "processes")
    if not rec["in_sync"]:
        eprint(f"jprefs rl: WARNING: the {dist.world} processes ended with different weights or state: {rec}")
    return rec
