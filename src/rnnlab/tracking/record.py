"""A record that cannot lie: every run ends FINISHED, FAILED or KILLED, with the reason.

Three things end a run early, and each gets its own status and a sentence in the run's
``rnnlab.failure`` tag and on the console:

- an error anywhere after the run is created (trainer, callbacks, test, artifact upload,
  any DDP rank) -> FAILED;
- a non-finite loss or gradient norm (``callbacks.DivergenceGuard``) -> FAILED, stopped at that
  step before the bad update is applied, so the last checkpoint stays good;
- SIGTERM or SIGINT (:class:`SignalHandlers`) -> a checkpoint at the next batch boundary,
  KILLED, and exit code 128 + the signal number, as schedulers expect.

Only global rank zero creates and ends the run. Other DDP ranks learn its id from
``RNNLAB_RUN_ID`` (exported before the workers start) so a crash there marks it FAILED
before the process dies.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from rnnlab.core.dist import global_rank, is_rank_zero
from rnnlab.core.errors import UserError
from rnnlab.tracking.mlflow import redact
from rnnlab.tracking.store import retry_marking

FAILURE_TAG = "rnnlab.failure"
RUN_ID_ENV = "RNNLAB_RUN_ID"
URI_ENV = "RNNLAB_RUN_TRACKING_URI"


class Diverged(Exception):
    """Training produced a non-finite loss or gradient: the run has failed."""


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT ended the run; ``exit_code`` is what a scheduler expects."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SignalHandlers:
    """SIGTERM and SIGINT stop a run at the next batch boundary instead of mid-step.

    While a trainer runs, the handler raises Lightning's own stop flag (the one its SLURM
    SIGTERM handling uses; rank zero broadcasts it to every DDP rank); the
    ``callbacks.SignalCheckpoint`` callback then writes ``last.ckpt``. During a validation
    of training the flag waits for that validation's end, so the checkpoint holds a whole
    epoch's scores. Outside the trainer (data preparation, start-up) and on a second
    signal, it raises at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.trainer: Any = None  # the running pl.Trainer, if any
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = signum
        trainer = self.trainer
        running = trainer is not None and trainer.state.status.value == "running"
        if first and running and _validating_while_fitting(trainer):
            # a validation stopped halfway leaves no state to resume from: it finishes, and
            # callbacks.SignalCheckpoint raises the flag below at its end (lowered here:
            # Lightning's own SIGTERM notifier, which runs first, has raised it already)
            trainer._signal_connector.received_sigterm = False
            print(f"{signal_name(signum)} received: stopping after this validation (again to "
                  f"stop at once)", file=sys.stderr, flush=True)
            return
        if first and running:
            print(f"{signal_name(signum)} received: stopping after this batch (again to stop "
                  f"at once)", file=sys.stderr, flush=True)
            # Lightning's documented SIGTERM path; a plain flag it checks after every batch
            trainer._signal_connector.received_sigterm = True
            return
        raise RunInterrupted(signum, f"interrupted by {signal_name(signum)}")

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            # outside the main thread (a joblib worker thread) signals cannot be caught: as is
            with suppress(ValueError):
                self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self.trainer = None


def _validating_while_fitting(trainer: Any) -> bool:
    state = trainer.state
    return (state.fn is not None and state.fn.value == "fit" and state.stage is not None
            and state.stage.value == "validate")


class RunRecord:
    """Ends one MLflow run with the status that is true, and says why.

    On rank zero it owns the run; on another rank it only marks the run FAILED when that
    rank crashes (the launcher then stops every process)."""

    def __init__(self, client: Any, run_id: str, rank: int = 0) -> None:
        self.client = client
        self.run_id = run_id
        self.rank = rank

    @classmethod
    def for_worker(cls) -> RunRecord | None:
        """The record a non-zero DDP rank may touch: the run its rank zero exported."""
        run_id, uri = os.environ.get(RUN_ID_ENV), os.environ.get(URI_ENV)
        if is_rank_zero() or not run_id or not uri:
            return None
        from mlflow.tracking import MlflowClient  # heavy (about a second): workers only

        return cls(MlflowClient(uri), run_id, global_rank())

    @staticmethod
    @contextmanager
    def guard_worker() -> Iterator[None]:
        """On a non-zero DDP rank: a crash marks the exported run FAILED before the rank dies
        (the launcher then kills every process, rank zero included, with SIGKILL)."""
        with recorded(RunRecord.for_worker()):
            yield

    def export(self, tracking_uri: str) -> None:
        """Tell worker processes started from here which run they belong to."""
        os.environ[RUN_ID_ENV] = self.run_id
        os.environ[URI_ENV] = tracking_uri

    @staticmethod
    def unexport() -> None:
        os.environ.pop(RUN_ID_ENV, None)
        os.environ.pop(URI_ENV, None)

    def end(self, status: str, reason: str | None = None) -> None:
        """Set the final status (and ``rnnlab.failure``); never raises, never leaves RUNNING."""
        if self.rank != 0 and status == "FINISHED":
            return
        try:
            # the first cause stands: when a worker dies, rank zero fails next with a
            # lost connection, which would only hide why
            if reason and FAILURE_TAG not in self.client.get_run(self.run_id).data.tags:
                prefix = f"rank {self.rank}: " if self.rank else ""
                self.client.set_tag(self.run_id, FAILURE_TAG, redact(prefix + reason)[:5000])
            self.client.set_terminated(self.run_id, status)
        except Exception as err:  # the store failed: try again, else say how to mark it later
            shown = f"rank {self.rank}: {reason}" if reason and self.rank else reason
            retry_marking(self.client, self.run_id, status, shown, err)


def failure_of(err: BaseException, handlers: SignalHandlers | None) -> tuple[str, str]:
    """(status, reason) for an exception that ended a run."""
    if isinstance(err, RunInterrupted):
        return "KILLED", str(err)
    if handlers is not None and handlers.received is not None and isinstance(
            err, (SystemExit, KeyboardInterrupt)):
        return "KILLED", f"interrupted by {signal_name(handlers.received)}"
    if isinstance(err, SystemExit):  # e.g. submitit exiting to requeue a pre-empted job
        return "KILLED", f"the process was told to exit (SystemExit {err.code}), as a " \
                         f"scheduler does to requeue a job; ckpt_path=auto continues it"
    if isinstance(err, (UserError, Diverged)):
        return "FAILED", str(err)
    first = str(err).splitlines()[0] if str(err) else ""
    return "FAILED", f"{type(err).__name__}: {first}" if first else type(err).__name__


@contextmanager
def recorded(record: RunRecord | None, handlers: SignalHandlers | None = None
             ) -> Iterator[None]:
    """End ``record`` FAILED/KILLED if the block raises (anything, signals included)."""
    try:
        yield
    except BaseException as err:
        if record is not None:
            record.end(*failure_of(err, handlers))
        raise
