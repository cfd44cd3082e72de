"""torch.compile with progressive learning: each stage's image size compiles once. No recompilation per
epoch and none when a stage changes dropout or drop-path (their rates are buffers, not guarded
constants). Inductor would take minutes on 2 CPU cores, so the run uses a backend that counts the
graphs dynamo hands it and runs them eagerly (`module.compile_backend`): what is counted is dynamo's
compilations, which inductor would each turn into kernels."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo import register_backend

from effnetv2.training.pipeline import train
from helpers.probes import BatchShapeRecorder

COMPILED: list[tuple[int, ...]] = []


@register_backend(name="effnetv2_counting")
def counting_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
    images = [x for x in example_inputs if x.dim() == 4 and not isinstance(x, torch.nn.Parameter)]
    COMPILED.append((tuple(images[0].shape) if images else None, torch.is_grad_enabled()))
    return graph_module.forward


@pytest.mark.timeout(600)
def test_three_stages_compile_once_per_size(compose_train) -> None:
    torch._dynamo.reset()
    COMPILED.clear()
    cfg = compose_train(
        [
            "data.subset=256",
            "data.batch_size=16",
            "data.num_workers=0",
            "trainer.max_epochs=6",  # two epochs per stage: a new epoch must not recompile
            "schedule.num_stages=3",
            "schedule.image_size=[16,32]",  # 16, 24, 32 px
            "schedule.dropout=[0.1,0.3]",  # changes every stage
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "torch_threads=1",
            "module.compile=true",
            "module.compile_backend=effnetv2_counting",
            "+callbacks.shapes._target_=helpers.probes.BatchShapeRecorder",
        ]
    )
    train(cfg)
    torch._dynamo.reset()
    train_sizes = {shape[-1] for mode, shape in BatchShapeRecorder.seen if mode == "train"}
    assert train_sizes == {16, 24, 32}
    assert COMPILED, "nothing was compiled"
    assert len(COMPILED) <= len(BatchShapeRecorder.seen), (
        f"{len(COMPILED)} compilations for {len(BatchShapeRecorder.seen)} (phase, shape) pairs "
        f"{sorted(BatchShapeRecorder.seen)}: {COMPILED}"
    )
