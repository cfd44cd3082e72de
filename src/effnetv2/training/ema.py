"""An exponential moving average of the weights that training validates, saves and tests.

Lightning's `EMAWeightAveraging` validates with the average and saves it as the checkpoint's
`state_dict` (the raw weights go to `current_model_state`). But loading a checkpoint while it is
attached always restores the *raw* weights, also for `trainer.test(ckpt_path=...)` after `fit`, which
is how a run tests its best checkpoint: the test would measure the raw weights. Here the raw weights
are restored only to resume fitting; evaluation keeps the averaged ones.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging


class EMAWeightAveraging(LightningEMAWeightAveraging):
    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
