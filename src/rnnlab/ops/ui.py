"""``make ui`` / ``make server``: the links that open MLflow's UI on the training runs.

MLflow 3.17's UI opens every experiment in its GenAI view (traces, latency, token usage)
and ignores the ``mlflow.experimentKind`` tag: the view follows the sidebar's GenAI /
Model training switch, which the browser keeps (localStorage ``mlflow.workflowType_v1``)
and which starts on GenAI. The UI also reads the switch from the page's URL,
``?workflowType=machine_learning``, which lands in the Model training view: the runs
table, and the sidebar's Model registry link.

The runs table shows no metric column until one is picked. The UI opens a *shared view*
(``&viewStateShareKey=<key>``) stored in the experiment tag
``mlflow.sharedViewState.<key>``; :func:`pin_view` stores one under the key ``rnnlab``
that shows each experiment's monitored validation metric and its test twin
(``task.monitor``), so the printed links open with those columns ("Override saved view"
in the UI keeps them for good).

    python -m rnnlab.ops.ui --tracking-uri sqlite:///mlflow.db --url http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

# what MLflow's UI reads (mlflow/server/js, 3.17): the workflow switch's URL parameter and
# the shared-view tag prefix and URL parameter
TRAINING_VIEW = "workflowType=machine_learning"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "rnnlab"
# the registered model beside the metrics (the wide Dataset and Source columns of the UI's
# default would push the metrics off screen; Columns adds them back)
DEFAULT_COLUMNS = ["attributes.`Models`"]
RUNS_SCANNED = 200  # the newest runs whose monitors and metrics pick the columns


def experiment_url(base: str, experiment_id: str, shared_view: bool = False) -> str:
    """The experiment's runs table in the Model training view (with rnnlab's columns when
    ``shared_view``)."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"
    return url + (f"&viewStateShareKey={VIEW_KEY}" if shared_view else "")


def registry_url(base: str) -> str:
    """The Model registry page (its sidebar link shows only in the Model training view)."""
    return f"{base.rstrip('/')}/#/models?{TRAINING_VIEW}"


def metric_columns(runs: Iterable[Any]) -> list[str]:
    """The runs table's metric columns: each monitored validation metric (commonest first)
    and its ``test/`` twin, those that some run logged."""
    runs = list(runs)
    logged = {key for run in runs for key in run.data.metrics}
    monitors = Counter(run.data.params["task.monitor"] for run in runs
                       if "task.monitor" in run.data.params)
    columns: list[str] = []
    for monitor, _ in monitors.most_common():
        for key in (monitor, monitor.replace("val/", "test/", 1)):
            if key in logged and f"metrics.`{key}`" not in columns:
                columns.append(f"metrics.`{key}`")
    return columns


def pin_view(client: Any, experiment_id: str) -> bool:
    """Store rnnlab's shared view (the metric columns) on the experiment; False when its
    runs monitor no metric. Written only when it changed, so opening the UI twice is quiet."""
    runs = client.search_runs([experiment_id], max_results=RUNS_SCANNED,
                              order_by=["attributes.start_time DESC"])
    metrics = metric_columns(runs)
    if not metrics:
        return False
    value = json.dumps({"selectedColumns": DEFAULT_COLUMNS + metrics})
    tag = VIEW_TAG_PREFIX + VIEW_KEY
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(tag) != value:
        client.set_experiment_tag(experiment_id, tag, value)
    return True


def links(client: Any, base: str) -> list[str]:
    """One line per active experiment (its training-view link) and the registry's."""
    lines = []
    for exp in client.search_experiments(order_by=["name ASC"]):
        if exp.name == "Default" and not client.search_runs([exp.experiment_id],
                                                             max_results=1):
            continue
        lines.append(f"  {exp.name:<24} "
                     f"{experiment_url(base, exp.experiment_id, pin_view(client, exp.experiment_id))}")
    lines.append(f"  {'Model registry':<24} {registry_url(base)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True, help="the store the UI shows")
    parser.add_argument("--url", required=True, help="where the UI answers")
    args = parser.parse_args(argv)
    # mlflow is heavy: loaded only when the links are asked for
    from mlflow import MlflowClient

    print(f"MLflow UI on {args.url}: open an experiment through its link below, which lands "
          f"in the Model training view (?{TRAINING_VIEW}; MLflow otherwise opens its GenAI "
          f"view) with the task's metric columns:", flush=True)
    try:
        lines = links(MlflowClient(tracking_uri=args.tracking_uri), args.url)
    except Exception as err:  # noqa: BLE001 - the UI still starts; the links are a courtesy
        lines = [f"  (experiments not listed: {err})",
                 f"  {'Experiments':<24} {args.url.rstrip('/')}/#/experiments?{TRAINING_VIEW}"]
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
