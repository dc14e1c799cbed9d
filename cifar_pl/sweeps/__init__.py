"""Run a family of experiments that differ in a few values (one after another, or side by side on Ray) and compare
them.

    python -m cifar_pl.sweep configs/sweeps/label_corruption.yaml --data.data_dir ../shared/data

A sweep file names a base config (LightningCLI composes several, like repeated ``--config``), arguments for
every run, and the runs: ``runs:`` maps a run name to its overrides, ``grid:`` makes one run per combination of
values (named after them). Arguments after the sweep file go to every run; one that sets what the file sets per
run (an option of ``runs:``/``grid:``, the seed of ``seeds:``, a searched option) is refused. Each run is ``python -m cifar_pl fit`` in its own process, logging to
``lightning_logs/<sweep>/<run>/version_N``, so TensorBoard shows the runs side by side. Resumable: a run is done
when its own record says so (``run.json``: every epoch trained, the test written, exit 0) and is then not redone;
an interrupted or failed one continues from its ``last.ckpt``. SIGTERM/SIGINT to the sweep reach the run in
progress, which saves and stops; the sweep then exits 128 + signal. At the end ``lightning_logs/<sweep>/plots/``
gets one chart per compared metric (PNG and SVG), final-value bars and ``summary.md``.

Where the runs run: with Ray Tune installed (``pip install 'cifar_pl[ray]'``), side by side as Tune trials
(``ray_engine``: ``--cpus-per-run``, ``--gpus-per-run``, ``--max-parallel``, ``--address``), else one after
another in this process's machine (``--engine sequential`` asks for that with Ray installed). A ``search:`` section
searches options instead of listing runs (``search``, Ray only). docs/scale.md.

Everything is checked before the first run starts: the file (read with a bound on YAML aliases), every run's
configuration (parsed and built as ``fit`` would, without training: a typo in one override fails at once, naming
the run), run names (two grid values that make one name are refused; ``experiment`` is the sweep's to set), and
every run that has run before: its recorded configuration must be the one the sweep would run now, or the sweep
stops with one line naming the runs that changed (``--rerun-changed`` trains those again in a new version folder).

```yaml
sweep: label_corruption
config: configs/corrupt/labels.yaml
args: {trainer.max_epochs: 30}
grid: {data.corrupt_prob: [0.0, 0.5, 1.0]}        # or runs: {p0: {data.corrupt_prob: 0.0}, ...}
compare: [train/loss, train/acc, val/acc, train/epoch_time]
seeds: [0, 1, 2]                                  # optional: every run once per seed (or repeats: 3)
```

With ``seeds:`` (or ``repeats: N``, seeds 0..N-1) every run becomes a group of runs ``<run>,seed=<s>`` that differ
only in ``seed_everything``; the charts draw each group's mean with a band of one standard deviation (and the
thin curves of its members), and ``summary.md`` gives mean ± std (sample std, n - 1) per group and says which
groups' intervals overlap, i.e. which differences the repeats cannot tell from seed noise.

The package: ``spec`` reads and checks the file and plans each run, ``sequential`` and ``ray_engine`` run them,
``search`` draws trials, ``report`` writes the progress lines, results, charts and summary, ``cli`` is the command.
"""
