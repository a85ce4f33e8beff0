"""The temporal EMA under two processes (gloo on CPU) equals the single-process result."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spml_rs.dataset_info import DatasetInfo
from spml_rs.methods.adagc import AdaGCLoss

N, C, STEPS, BATCH = 12, 4, 3, 6


def make_loss() -> AdaGCLoss:
    info = DatasetInfo("toy", tuple("abcd"), 3, N, 1.0)
    return AdaGCLoss(info=info)


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randperm(N, generator=g)[:BATCH], torch.rand(BATCH, C, generator=g))
        for _ in range(STEPS)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loss = make_loss()
        for step, (index, probs) in enumerate(batches()):
            # uneven shards on the last step, as with a DistributedSampler's tail
            cut = BATCH // 2 + (1 if step == STEPS - 1 else 0)
            shard = slice(0, cut) if rank == 0 else slice(cut, BATCH)
            loss.update_scores(index[shard], probs[shard], momentum=0.8)
        torch.save(loss.score_state, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_temporal_ema_is_identical_on_both_ranks_and_matches_one_process(tmp_path: Path) -> None:
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    reference = make_loss()
    for index, probs in batches():
        reference.update_scores(index, probs, momentum=0.8)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(states[0], states[1])
    assert torch.allclose(states[0], reference.score_state, atol=1e-6)
    assert reference.score_state[:, -1].gt(0).any()  # the test did update something
