"""The TensorBoard logger of every run: Lightning's, with an HParams tab that tells the truth.

Lightning's ``TensorBoardLogger`` writes the hyper-parameters each time a loop starts (the fit, then the test
after it) with a placeholder ``hp_metric`` of -1 at step 0; TensorBoard keeps a run's latest value of a tag and
drops the values of later steps when an earlier step arrives, so every run's HParams row read -1. Its columns
were whatever the LightningModule and DataModule saved (``_instantiator``, ``augment_on_device``, Adam's
``betas`` on an SGD run).

Here a run's HParams are written once, from the run's configuration: the columns that define an experiment
(:data:`COLUMNS`), and as metrics the scalars the run really logs (:data:`METRICS`: the best and the last
validation accuracy, the test accuracy, ``test_on_val/acc`` where the test scores the validation split, the
last training accuracy, the epochs trained). No metric value is ever written by the logger itself, so nothing
overwrites them. TensorBoard keeps the first HParams entry of a run folder: a run resumed with other values (more
epochs) keeps the row of its first start, and ``train/epochs_done`` says how far it went.
Lightning's ``epoch`` counter and the learning rate are written as ``train/epoch`` and ``train/lr-<Optimizer>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import TensorBoardLogger

# column -> its type in TensorBoard (every run writes the same columns, so the table is one table)
COLUMNS: dict[str, type] = {
    "experiment": str,
    "data": str,
    "net": str,
    "net_kwargs": str,
    "optimizer": str,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "schedule": str,
    "batch_size": float,
    "augment": str,
    "corruption": str,
    "label_smoothing": float,
    "epochs": float,
    "seed": float,
}
# ticked in the HParams tab at first (TensorBoard ticks the first five it lists; "corruption" too where the run
# has one, so a corruption sweep shows its p); the others are a click away
SHOWN = ("net", "optimizer", "lr", "augment", "epochs")
METRICS = ("val/acc_best", "val/acc", "test/acc", "test_on_val/acc", "train/acc", "train/epochs_done")
_MOMENTUM = {"sgd": "momentum", "rmsprop": "rmsprop_momentum", "rmsprop_keras": "rmsprop_momentum"}


def _short(value: Any) -> str:
    """A value as one short cell: a mapping as ``k=v,...``, a list of steps by their names."""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):  # augmentation steps: crop+cutout(size=8)
        steps = []
        for v in value:
            if isinstance(v, Mapping):
                args = {k: a for k, a in v.items() if k != "name"}
                steps.append(f"{v.get('name', '?')}({_short(args)})" if args else str(v.get("name", "?")))
            else:
                steps.append(_short(v))
        return "+".join(steps)
    return str(value)


def experiment_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The HParams columns of a run from its configuration (as ``--print_config`` shows it); a column that does
    not apply (momentum of Adam, corruption of clean data) is left out and shows empty."""
    model = config.get("model") or {}
    optim = model.get("optim") or {}
    schedule = model.get("schedule") or {}
    data = config.get("data") or {}
    data_args = data.get("init_args") or {}
    trainer = config.get("trainer") or {}
    out: dict[str, Any] = {
        "experiment": config.get("experiment"),
        "data": str(data.get("class_path", "")).rsplit(".", 1)[-1].removesuffix("DataModule") or None,
        "net": model.get("net"),
        "net_kwargs": _short(model["net_kwargs"]) if model.get("net_kwargs") else None,
        "optimizer": optim.get("name"),
        "lr": optim.get("lr"),
        "momentum": optim.get(_MOMENTUM.get(str(optim.get("name")), ""), None),
        "weight_decay": optim.get("weight_decay"),
        "schedule": schedule.get("name"),
        "batch_size": data_args.get("batch_size"),
        "augment": _short(data_args["augment"]) if data_args.get("augment") is not None else None,
        "label_smoothing": model.get("label_smoothing"),
        "epochs": trainer.get("max_epochs") if trainer.get("max_epochs") not in (-1,) else None,
        "seed": config.get("seed_everything"),
    }
    corrupt = data_args.get("corrupt")
    if corrupt not in (None, "none"):
        prob = data_args.get("corrupt_prob")
        out["corruption"] = f"{corrupt} p={prob}" if corrupt == "labels" else str(corrupt)
    cells = {k: _cell(COLUMNS[k], v) for k, v in out.items()}
    return {k: v for k, v in cells.items() if v is not None}


def _cell(kind: type, value: Any) -> Any:
    if value is None or isinstance(value, bool) and kind is not str:
        return None
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return str(value)


def hparams_summaries(columns: Mapping[str, Any]) -> tuple[Any, Any]:
    shown = set(SHOWN) | ({"corruption"} if "corruption" in columns else set())
    return _summaries(columns, shown)


def _summaries(columns: Mapping[str, Any], shown: set[str]) -> tuple[Any, Any]:
    """The experiment summary (every column and metric, the same for every run) and this run's session start
    summary (its values), as TensorBoard's HParams plugin reads them. The plugin lists the columns marked
    ``differs`` first and ticks the first five it lists: :data:`SHOWN` are marked, so a new user sees them."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    kinds = {str: api_pb2.DATA_TYPE_STRING, float: api_pb2.DATA_TYPE_FLOAT64}
    experiment = api_pb2.Experiment(
        hparam_infos=[
            api_pb2.HParamInfo(name=name, type=kinds[kind], differs=name in shown)
            for name, kind in COLUMNS.items()
        ],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in METRICS],
    )
    start = plugin_data_pb2.SessionStartInfo()
    for name, value in columns.items():
        if isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = float(value)

    def summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
        return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])

    return (
        summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
    )


def scalar_tag(name: str) -> str:
    """Where a scalar goes in TensorBoard: Lightning's ``epoch`` counter and the LR monitor's ``lr-<Optimizer>``
    join the ``train/`` group, so the Scalars tab opens on the runs' curves (TensorBoard opens its first groups,
    in the order of their names) instead of a counter."""
    if name == "epoch" or name.startswith("lr-"):
        return f"train/{name}"
    return name


class ExperimentLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger (same folders, same ``hparams.yaml``) whose HParams entry is written once
    per run from ``columns`` (set by the CLI from the run's configuration) and never gets a placeholder metric.

    Args:
        columns: the run's HParams values (:func:`experiment_columns`); None until the CLI sets them.
        **kwargs: as ``TensorBoardLogger`` (``default_hp_metric`` is off: the metrics are real scalars).
    """

    def __init__(self, *args: Any, columns: dict[str, Any] | None = None, **kwargs: Any):
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(*args, **kwargs)
        self.columns = dict(columns or {})
        self._session_written = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({scalar_tag(k): v for k, v in metrics.items()}, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        # hparams.yaml as Lightning keeps it (no metrics given: Lightning writes no HParams summary of its own)
        super().log_hyperparams(params, metrics=None, step=step)
        if self._session_written or not self.columns:
            return
        exp, ssi = hparams_summaries(self.columns)
        writer = self.experiment._get_file_writer()
        writer.add_summary(exp)
        writer.add_summary(ssi)
        self._session_written = True
