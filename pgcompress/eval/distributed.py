"""Process groups for the eval: torchrun's environment, or N local processes (``--nproc``).

NCCL on CUDA, gloo on CPU. Only the float64 sums cross processes, so 1 and N processes give the
same numbers whenever their batches hold the same sequences.
"""

from __future__ import annotations

import os
import queue
import socket
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from pgcompress import errors
from pgcompress.errors import PgcError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str | None) -> str:
    """'cpu' or 'cuda'; None picks cuda when one is present."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise PgcError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise PgcError("--device cuda: no CUDA device is available (use --device cpu)")
    return name


def from_env(device_kind: str) -> DistContext:
    """Join the process group torchrun (or ``spawn``) described in RANK/WORLD_SIZE/LOCAL_RANK."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world_size <= 1:
        return DistContext(0, 1, torch.device(device_kind))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_kind == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        kwargs = {"device_id": device} if device_kind == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistContext(rank, world_size, device)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def spawn(nproc: int, device_kind: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in ``nproc`` fresh processes forming one group; return rank 0's result.

    A PgcError in any child is raised here with its class and message; other failures become a
    RuntimeError carrying the child's traceback. The other children are stopped at once rather
    than left waiting in a collective.
    """
    if nproc < 1:
        raise PgcError(f"--nproc must be at least 1, got {nproc}")
    if device_kind == "cuda" and nproc > torch.cuda.device_count():
        raise PgcError(f"--nproc {nproc} but only {torch.cuda.device_count()} CUDA devices")
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    threads = max(1, (os.cpu_count() or 1) // nproc)
    procs = [
        ctx.Process(target=_child, args=(r, nproc, port, threads, fn, args, results), daemon=True)
        for r in range(nproc)
    ]
    for p in procs:
        p.start()
    try:
        return _collect(procs, results)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def _collect(procs, results) -> Any:
    value, pending = None, len(procs)
    while pending:
        try:
            rank, status, payload = results.get(timeout=1.0)
        except queue.Empty:
            dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"eval process rank {dead[0]} died with exit code {procs[dead[0]].exitcode}")
            continue
        pending -= 1
        if status == "pgc_error":
            cls_name, message = payload
            raise getattr(errors, cls_name, PgcError)(message)
        if status == "error":
            raise RuntimeError(f"eval process rank {rank} failed:\n{payload}")
        if rank == 0:
            value = payload
    return value


def _child(rank, world_size, port, threads, fn, args, results) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    # Share the cores instead of oversubscribing them N times.
    torch.set_num_threads(threads)
    try:
        value = fn(*args)
        results.put((rank, "ok", value if rank == 0 else None))
    except PgcError as exc:
        results.put((rank, "pgc_error", (type(exc).__name__, str(exc))))
    except BaseException:
        results.put((rank, "error", traceback.format_exc()))
    finally:
        shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
