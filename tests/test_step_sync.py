"""No host-device synchronisation per training step: a real run of the default configuration (every
default callback, the progress bar included) counts the calls that make the host wait for the device
(`Tensor.item`/`tolist`/`numpy`/`bool()`/`float()`/`int()`, torch.distributed collectives) and stays
within the allowance docs/training.md documents: on average at most SYNC_ALLOWANCE per step, i.e. a few
reads every `trainer.log_every_n_steps` / `faults.check_every_n_steps` steps, none in most steps."""

from __future__ import annotations

import pytest

from effnetv2.training.pipeline import train
from helpers.probes import SyncCounter

STEPS = 40
SYNC_ALLOWANCE = 0.25  # per step, averaged over STEPS steps (docs/training.md, "Host-device syncs")


@pytest.mark.timeout(600)
def test_training_steps_do_not_synchronise_every_step(compose_train) -> None:
    cfg = compose_train(
        [
            "data.subset=512",
            "data.batch_size=8",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            "schedule=fixed",
            f"trainer.limit_train_batches={STEPS}",
            "trainer.limit_val_batches=1",
            "test=false",
            "torch_threads=1",
            "+callbacks.sync_counter._target_=helpers.probes.SyncCounter",
        ]
    )
    train(cfg)
    counts = SyncCounter.per_batch
    assert len(counts) == STEPS
    total = sum(sum(batch.values()) for batch in counts)
    syncing_steps = [index for index, batch in enumerate(counts) if batch]
    detail = {index: counts[index] for index in syncing_steps}
    assert total <= SYNC_ALLOWANCE * STEPS, f"{total} synchronising calls in {STEPS} steps: {detail}"
    assert len(syncing_steps) <= STEPS // 10, f"steps that synchronise: {detail}"
