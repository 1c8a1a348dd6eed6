"""The errors a user can cause. Each message is one sentence that names the file,
key or component at fault and says what to do; run.py prints it and exits 2."""


class DetplugError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class PlanError(DetplugError):
    """The plan file is missing, malformed, or names things that do not exist."""


class CheckError(DetplugError):
    """The plan's components do not fit together (the spec chain is broken)."""


class DataError(DetplugError):
    """A data folder, label file, image or TFRecord shard is missing or wrong."""


class CheckpointError(DetplugError):
    """The run folder's checkpoints cannot be used."""


class RunFolderBusy(DetplugError):
    """Another process is training into the same run folder."""
