"""DataModules by name: a checkpoint records which DataModule trained it, and that name is looked up here, never
imported, so a file can only ever select one of the classes this table holds."""

from __future__ import annotations

from ..errors import BadFile

_DATAMODULES: dict[str, type] = {}


def register_datamodule(cls: type) -> type:
    """Add a DataModule class to the table (a class decorator; your own DataModule can use it too)."""
    if _DATAMODULES.get(cls.__name__, cls) is not cls:
        raise ValueError(f"a DataModule named '{cls.__name__}' is already registered")
    _DATAMODULES[cls.__name__] = cls
    return cls


def list_datamodules() -> list[str]:
    return sorted(_DATAMODULES)


def datamodule_class(class_path: str, source: str = "") -> type:
    """The registered class a recorded ``class_path`` names (``cifar_pl.data.CIFAR10DataModule``, its defining
    module's path, or the bare class name); anything else is refused with the file and key named."""
    name = str(class_path).rsplit(".", 1)[-1]
    cls = _DATAMODULES.get(name)
    known = {name, f"cifar_pl.data.{name}", f"{cls.__module__}.{name}"} if cls is not None else set()
    if class_path not in known:
        where = f"{source}: " if source else ""
        raise BadFile(
            f"{where}datamodule_hyper_parameters._class_path is {class_path!r}, which is not a registered "
            f"DataModule ({', '.join(list_datamodules())}); nothing named in a checkpoint is imported. "
            f"For your own DataModule, decorate it with cifar_pl.data.register_datamodule and import it first"
        )
    return cls
