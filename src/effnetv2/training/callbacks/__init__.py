"""Every Lightning callback of a training run, one concern per module (conf/callbacks/ picks them):

- `progressive`: applies the progressive-learning stages (image size, RandAugment, mixup, dropout)
- `checkpoints`: keeps last.ckpt current; `preemption`: SIGTERM / SIGINT become a checkpoint and a stop
- `nan_guard`: a NaN or inf loss stops the run or skips the step
- `progress_bar`, `reporting`: the stage in the progress bar; stage plans, image grids, confusion matrix
- `finetune`: frozen backbone, new classifier; `ema`: the weight average that is validated and saved
- `val_predictions`: the validation split's (out-of-fold) predictions; `wandb_run`: the W&B run id
"""
