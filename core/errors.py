"""The errors a user can cause. Each message is one sentence that names the file,
key or component at fault and says what to do; run.py prints it and exits 2."""


from collections.abc import Sequence


def first_few(names: Sequence[str], count: int = 3) -> str:
    """``a.png, b.png, c.png, ...``: the first few of a list of names, for a message."""
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


class DetplugError(Exception):
    """Base of every error caused by the user's input rather than by a bug."""


class PlanError(DetplugError):
    """The plan file is missing, malformed, or names things that do not exist."""


class RegistryError(DetplugError):
    """A component cannot be found or two plugins disagree; the message says what to do."""


class CheckError(DetplugError):
    """The plan's components do not fit together (the spec chain is broken)."""


class DataError(DetplugError):
    """A data folder, label file, image or TFRecord shard is missing or wrong."""


class CheckpointError(DetplugError):
    """The run folder's checkpoints cannot be used."""


class RunFolderBusy(DetplugError):
    """Another process is training into the same run folder."""
