"""Errors a user can cause. Entry points print them as one line instead of a traceback."""


class EffNetV2Error(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(EffNetV2Error):
    """A configuration value that cannot work (unknown model, bad override, ...)."""


class CheckpointError(EffNetV2Error):
    """A weights file or checkpoint that is missing, unsafe or does not fit the model."""


class DataError(EffNetV2Error):
    """A data set that is missing, empty or holds unreadable samples."""
