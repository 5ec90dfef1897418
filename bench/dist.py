"""Processes and devices from accelerate: one process by default, data parallel under a distributed launcher.

Without an accelerator, accelerate only turns a multi-process launch (``torchrun``, ``accelerate launch``) into
CPU data parallelism (gloo) when asked for the CPU explicitly, so the CPU is requested exactly when no
accelerator is present. Nothing here names a device type.
"""

from __future__ import annotations

from pathlib import Path

import torch


def use_cpu() -> bool:
    """True when torch sees no accelerator (GPU, XPU, MPS...)."""
    accelerator = getattr(torch, "accelerator", None)
    return not (accelerator.is_available() if accelerator is not None else torch.cuda.is_available())


def cpu_halves(device) -> int:
    """Torch threads for each of two concurrent halves of work, or 0 where splitting does not pay: an
    accelerator, CPU autocast, or fewer than 2 threads. On a CPU the tiny UNet does not keep two threads busy (one
    thread is ~1.6x slower than two, not 2x), so two calls side by side with half the threads each finish sooner."""
    if torch.device(device).type != "cpu" or torch.is_autocast_enabled("cpu") or torch.get_num_threads() < 2:
        return 0
    return torch.get_num_threads() // 2


def process_state():
    """accelerate's shared PartialState for this process."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


def finish() -> None:
    """After a successful distributed run: wait for every process, then tear the process group down. Exiting with a
    live gloo group can abort a process at interpreter exit ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shared_run_dir(results_dir: str, method: str) -> Path:
    """The main process creates the run folder; every process gets its path."""
    from accelerate.utils import broadcast_object_list

    from bench.results import create_run_dir

    state = process_state()
    if state.num_processes == 1:
        return create_run_dir(results_dir, method)
    path = [str(create_run_dir(results_dir, method)) if state.is_main_process else None]
    broadcast_object_list(path)
    return Path(path[0])
