"""When the MLflow store itself fails after a run started (a full disk, a server gone).

The run's record then cannot be written either. :func:`retry_marking` tries again a few
times (a busy SQLite file or a restarting server often recovers within seconds); when the
store stays unusable it says in one sentence that the run is left RUNNING and gives the
command that marks it once the store works again::

    python -m rnnlab.tracking.store RUN_ID FAILED --uri sqlite:///.../mlflow.db
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from rnnlab.core.paths import project_root
from rnnlab.tracking.mlflow import redact, resolve_tracking_uri

FAILURE_TAG = "rnnlab.failure"  # as tracking.record writes it
RETRY_WAITS_S = (1.0, 4.0)  # the pauses before each further try


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return redact(text)[:200]


def mark_run(client: Any, run_id: str, status: str, reason: str | None = None) -> None:
    """Set ``status`` (and, when the run has none yet, the ``rnnlab.failure`` reason)."""
    if reason and FAILURE_TAG not in client.get_run(run_id).data.tags:
        client.set_tag(run_id, FAILURE_TAG, redact(reason)[:5000])
    client.set_terminated(run_id, status)


def retry_marking(client: Any, run_id: str, status: str, reason: str | None,
                  first_error: BaseException, waits: tuple[float, ...] = RETRY_WAITS_S
                  ) -> bool:
    """Try again to mark ``run_id``; True once marked. Otherwise one sentence on stderr:
    the run is left RUNNING, why, and the command that marks it later."""
    error = first_error
    for wait in waits:
        time.sleep(wait)
        try:
            mark_run(client, run_id, status, reason)
        except Exception as err:  # noqa: BLE001 - still unusable: try again, then say so
            error = err
            continue
        print(f"MLflow run {run_id} marked {status} on a retry (the store failed first: "
              f"{_short(first_error)}).", file=sys.stderr)
        return True
    uri = redact(str(getattr(client, "tracking_uri", "") or ""))
    print(f"error: the MLflow store failed ({_short(error)}), so run {run_id} is left RUNNING "
          f"although it ended {status}; once the store works again (free disk space, restart "
          f"the server), mark it with: python -m rnnlab.tracking.store {run_id} {status}"
          f"{f' --uri {uri}' if uri else ''}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnlab.tracking.store RUN_ID STATUS [--uri URI] [--reason TEXT]``."""
    parser = argparse.ArgumentParser(prog="python -m rnnlab.tracking.store",
                                     description="Mark an MLflow run left RUNNING.")
    parser.add_argument("run_id")
    parser.add_argument("status", choices=["FAILED", "KILLED", "FINISHED"])
    parser.add_argument("--uri", help="the tracking URI (default: MLFLOW_TRACKING_URI or the "
                                      "project's mlflow.db)")
    parser.add_argument("--reason", help="the rnnlab.failure tag, if the run has none")
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient  # heavy (about a second): this command only

    uri = resolve_tracking_uri(args.uri, project_root())
    try:
        mark_run(MlflowClient(uri), args.run_id, args.status, args.reason)
    except Exception as err:  # noqa: BLE001 - one sentence, as everywhere
        print(f"error: could not mark run {args.run_id} in {redact(uri)} ({_short(err)}).",
              file=sys.stderr)
        return 1
    print(f"run {args.run_id} marked {args.status} in {redact(uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
