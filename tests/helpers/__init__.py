"""What the tests share, by concern: paths, small data, running the CLI, filesystems, fault injection (callbacks
loaded by class path into training processes, e.g. ``--trainer.callbacks+=tests.helpers.PauseAt``), a pretended
CUDA device, the hostile-input table. Fixtures are in conftest.py."""

from .cli import child_env, effective_config, largest_difference, run_cli, training_command
from .data import CIFAR10_ROWS, PHOTO_COLOURS, write_cifar_batch, write_photo, write_photo_folder
from .faults import FailOnRank, FileProxy, PauseAt, SignalAt
from .files import tmpfs_mount
from .paths import CONFIGS, REPO

__all__ = [
    "CIFAR10_ROWS", "CONFIGS", "PHOTO_COLOURS", "REPO", "FailOnRank", "FileProxy", "PauseAt", "SignalAt", "child_env",
    "effective_config", "largest_difference", "run_cli", "tmpfs_mount", "training_command", "write_cifar_batch", "write_photo",
    "write_photo_folder",
]  # fmt: skip
