"""The one tiny-run setting: the default configuration shrunk in size only (images, batches, steps),
every callback, logger and progress bar left as users run them. A few steps of v2_b0 on Fashion-MNIST
at 32 px over the default run's epochs: seconds on one CPU core. Tests add what they measure (epochs,
stages, a data set) on top."""

from __future__ import annotations

TINY = [
    "data.subset=64",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    # three warm-up steps barely move a zero-initialised classifier, and tests compare outputs across
    # sizes, checkpoints and ranks: the official uniform init makes the outputs depend on the input
    "model.classifier_init=uniform",
]
