"""Sweeps that survive a bad job.

In a Hydra multirun (`python src/train.py -m ...`) a job stopped by a user error returns a `JobFailure`
(see `cli.exit_on_user_error`) instead of exiting the process, so the sweep goes on to the next job.
`ReportFailedJobs` writes each failed job's error to `<job dir>/error.txt` and ends the sweep with one
summary line and exit status 1.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class JobFailure:
    """What a multirun job that a user error stopped returns. Returned, not raised: Hydra's basic sweeper
    raises the first failed job's exception at the end of the sweep (a traceback), while a returned value
    passes; the Optuna sweeper records a trial whose value is not a number as failed."""

    message: str

    def __str__(self) -> str:
        return self.message


class ReportFailedJobs(Callback):
    """Hydra callback (conf/hydra/default.yaml), multirun only: `<job dir>/error.txt` for each failed job
    (a user error's line, or the traceback of any other exception), then after the last job one line
    `error: N of M jobs failed: see ...` and exit status 1, so that scripts and schedulers see the failure.

    It counts the jobs that run in this process, as with Hydra's basic launcher (the one installed).
    """

    def __init__(self) -> None:
        self.jobs = 0
        self.failed: list[Path] = []

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:  # left by an earlier sweep into the same folder
            (Path(config.hydra.runtime.output_dir) / ERROR_FILE).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self.jobs += 1
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the exception: the `return_value` property re-raises it
            text = "".join(traceback.format_exception(error))
        elif isinstance(job_return.return_value, JobFailure):
            text = f"{job_return.return_value}\n"
        else:
            return
        path = Path(config.hydra.runtime.output_dir) / ERROR_FILE
        path.write_text(text)
        self.failed.append(path)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.failed:
            return
        if len(self.failed) == 1:
            where = str(self.failed[0])
        else:  # one shell pattern for all: <sweep dir>/{0,2}/error.txt
            folders = [path.parent for path in self.failed]
            common = Path(os.path.commonpath(folders))
            names = ",".join(str(folder.relative_to(common)) for folder in folders)
            where = f"{common}/{{{names}}}/{ERROR_FILE}"
        print(f"error: {len(self.failed)} of {self.jobs} jobs failed: see {where}", file=sys.stderr)
        sys.exit(1)
