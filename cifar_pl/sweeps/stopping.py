"""Tune told to stop every trial when the sweep gets SIGINT or SIGTERM (``ray_engine.SweepStop`` sets the flag).

A module of its own, imported by the Ray engine only (it imports Ray): Tune keeps the stopper in a search's saved
state and finds this class again by name when the search is continued in a new process."""

from __future__ import annotations

from ray.tune.stopper import Stopper

SIGNALLED: list[int] = []  # the signals this process got while Tune ran (SweepStop)


class StopOnSignal(Stopper):
    """Stops all trials once a signal came: each trial's run gets SIGTERM, saves its ``last.ckpt`` and stops."""

    def __call__(self, trial_id, result) -> bool:
        return bool(SIGNALLED)

    def stop_all(self) -> bool:
        return bool(SIGNALLED)
