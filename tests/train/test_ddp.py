"""Data-parallel training with two processes (gloo on CPU): every process ends with the same weights,
on one node and laid out as two nodes of one process each (what ``torchrun --nnodes 2`` sets up)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int, nodes: int) -> dict[str, str]:
    """What torchrun puts in the environment of process ``rank`` of ``world``, spread evenly over
    ``nodes`` machines (the rendezvous on the first one); init_distributed reads it."""
    per_node = world // nodes
    return dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                LOCAL_RANK=str(rank % per_node), LOCAL_WORLD_SIZE=str(per_node), GROUP_RANK=str(rank // per_node),
                GROUP_WORLD_SIZE=str(nodes))


def _worker(rank: int, world: int, port: int, out: str, nodes: int = 1) -> None:
    os.environ.update(torchrun_env(rank, world, port, nodes))
    if nodes > 1:  # each node has its own disk: a run folder per node
        out = str(Path(out) / f"node{rank // (world // nodes)}")
        Path(out).mkdir(exist_ok=True)
    torch.set_num_threads(1)
    import samkit
    from samkit.configs import ModelConfig
    from samkit.model.hiera import HieraConfig
    from samkit.model.memory import MemoryConfig
    from samkit.model.neck import NeckConfig
    from samkit.prompts import ClickConfig
    from samkit.data.synthetic.scenes import SyntheticSceneDataset
    from samkit.train import Trainer, TrainConfig, init_distributed

    assert init_distributed("cpu") == (rank, world)
    cfg = ModelConfig(name="ddp_tiny", image_size=64,
                      hiera=HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                        window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2)),
                      neck=NeckConfig(d_model=64), memory=MemoryConfig(d_model=64, num_layers=1, dim_feedforward=64),
                      decoder_mlp_dim=128)
    # Different seeds on purpose: the trainer must start every process from rank 0's weights.
    torch.manual_seed(100 + rank)
    model = samkit.build_model(cfg)
    data = SyntheticSceneDataset(6, size=(64, 64), seed=0, num_objects=(2, 4))
    tc = TrainConfig(steps=3, batch_size=1, max_objects=2, lr=1e-2, warmup_steps=0, ckpt_every=2, tensorboard=False,
                     train_parts=("image_encoder", "prompt_encoder", "mask_decoder"),
                     clicks=ClickConfig(num_correction_rounds=1, num_rounds_without_click=1))
    trainer = Trainer(model, data, tc, out_dir=Path(out) / "run", progress=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    for _ in range(tc.steps):
        before = (trainer.epoch, trainer.position)
        trainer.train_step()
        seen.append(before)
    trainer.save()
    torch.save({"start": start, "end": model.state_dict(), "seen": seen}, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("nodes", [1, 2], ids=["one node", "two nodes"])
def test_two_processes_hold_identical_weights(tmp_path, nodes):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path), nodes), nprocs=world, join=True)
    first, second = (tmp_path / "node0", tmp_path / "node1") if nodes > 1 else (tmp_path, tmp_path)
    r0 = torch.load(first / "rank0.pt", weights_only=True)
    r1 = torch.load(second / "rank1.pt", weights_only=True)
    for k in r0["end"]:
        assert torch.equal(r0["start"][k], r1["start"][k]), k  # rank 1 started from rank 0's weights
        assert torch.equal(r0["end"][k], r1["end"][k]), k
    changed = [k for k in r0["end"] if not torch.equal(r0["start"][k], r0["end"][k])]
    assert changed, "training changed nothing"
    assert r0["seen"] == r1["seen"]  # both walk the same global order, each its own slice
    # rank 0 wrote the checkpoints; they hold the common weights
    import samkit

    saved = samkit.build_model(checkpoint=first / "run" / "checkpoints" / "step_0000003.pt").state_dict()
    assert all(torch.equal(saved[k], r0["end"][k]) for k in saved)
    state = torch.load(first / "run" / "train_state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    if nodes > 1:  # the global rank 0 alone writes, not the first process of every node (its LOCAL_RANK is 0 too)
        assert not (second / "run").exists()
