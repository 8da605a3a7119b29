"""Pluggable executors that run work units and yield their results as they complete.

An executor takes a picklable top-level function and a list of tasks and yields
``(index, result, error)`` triples in completion order, one per task: ``error`` is the
exception raised while running or transporting the task (``result`` is then None). The
runner only sees this interface; the distributed backend (:class:`DaskExecutor`,
``--executor dask [--address tcp://HOST:PORT]``) is one more subclass registered in
:data:`EXECUTORS`.
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, ClassVar

from bench.errors import InvalidParameterError

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "LocalProcessExecutor",
    "SerialExecutor",
    "get_executor",
]


class Executor(abc.ABC):
    """Runs tasks; subclasses implement :meth:`imap_unordered`."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def imap_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        """Yield ``(index, fn(tasks[index]), None)`` or ``(index, None, error)`` per task."""

    def close(self, *, abort: bool = False) -> None:  # noqa: B027 - a do-nothing hook
        """Release workers (no-op by default); ``abort``: stop running tasks now (Ctrl-C)
        instead of waiting for them (their finished records are on disk already)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)


class SerialExecutor(Executor):
    """Runs every task in this process, in order (``--jobs 1``; debuggable)."""

    name = "serial"

    def imap_unordered(self, fn, tasks):
        for i, task in enumerate(tasks):
            try:
                res = fn(task)
            except Exception as exc:  # reported per task; the run goes on
                yield i, None, exc
            else:
                yield i, res, None


class LocalProcessExecutor(Executor):
    """A local pool of ``jobs`` worker processes (``spawn`` start method).

    ``spawn`` (not ``fork``) so that workers never inherit a parent's threads (JAX, BLAS)
    in a locked state; each worker imports the plugins it needs once and is reused.
    """

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        if jobs is None:
            jobs = os.cpu_count() or 1
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise InvalidParameterError(f"jobs must be a positive integer; got {jobs!r}")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def imap_unordered(self, fn, tasks):
        if not tasks:
            return
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)), mp_context=ctx,
                                         initializer=_ignore_sigint)
        futures = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            exc = fut.exception()
            yield futures[fut], (None if exc else fut.result()), exc

    def close(self, *, abort: bool = False) -> None:
        if self._pool is None:
            return
        if abort:  # Ctrl-C: the workers ignore SIGINT; stop them now, do not wait
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C goes to the runner, which stops the workers (a worker that
    took it itself would die mid-record and print a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DaskExecutor(Executor):
    """Runs tasks on a Dask distributed cluster (``--executor dask``).

    With ``address`` the client connects to a running scheduler (``dask scheduler`` plus
    ``dask worker tcp://HOST:PORT`` processes started by the user, see the README's "Scaling
    out"); without it a :class:`distributed.LocalCluster` of ``jobs`` single-threaded worker
    processes is started here and shut down by :meth:`close`.

    Every task is submitted with ``retries`` (a task that raises is run again, e.g. after a
    transient I/O error on a shared file system). A task whose *worker dies* (killed, out
    of memory, node lost) is rescheduled on another worker by the scheduler itself, up to
    the scheduler's ``allowed-failures`` times (``allowed_failures`` here for the
    LocalCluster; ``distributed.scheduler.allowed-failures``, default 3, on a cluster);
    after that its error (:class:`distributed.KilledWorker`) is yielded like any other.
    Re-running a task is safe because :func:`bench.runner.run_unit` is deterministic and
    writes each record atomically, so a retry rewrites identical records.

    Parameters
    ----------
    jobs : int, optional
        Workers of the LocalCluster (default: number of cores). Not allowed with ``address``
        (a cluster's size is set by the workers started on it).
    address : str, optional
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    retries : int
        Extra attempts of a task that raised (default 1).
    allowed_failures : int
        LocalCluster only: worker deaths a task may cause before it is given up (default 3).
    timeout : float
        Seconds to wait for the scheduler (default 30).
    """

    name = "dask"

    def __init__(
        self,
        jobs: int | None = None,
        *,
        address: str | None = None,
        retries: int = 1,
        allowed_failures: int = 3,
        timeout: float = 30.0,
    ) -> None:
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise InvalidParameterError(f"jobs must be a positive integer; got {jobs!r}")
        if address is not None:
            if not isinstance(address, str) or not address.strip():
                raise InvalidParameterError(
                    f"address must be a scheduler address such as 'tcp://HOST:8786'; "
                    f"got {address!r}"
                )
            if jobs is not None:
                raise InvalidParameterError(
                    "jobs sets the size of a local Dask cluster; with address "
                    f"{address!r} the cluster's workers are started separately "
                    "('dask worker ADDRESS --nworkers N')"
                )
        for pname, value in (("retries", retries), ("allowed_failures", allowed_failures)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidParameterError(
                    f"{pname} must be a non-negative integer; got {value!r}"
                )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidParameterError(f"timeout must be a positive number of s; got {timeout!r}")
        self.jobs = jobs
        self.address = address
        self.retries = retries
        self.allowed_failures = allowed_failures
        self.timeout = float(timeout)
        self._client = None
        self._cluster = None

    @staticmethod
    def _distributed():
        try:
            import distributed
        except ImportError as exc:
            raise InvalidParameterError(
                "the dask executor needs dask.distributed: pip install 'impbench[dask]' "
                f"({exc})"
            ) from None
        return distributed

    def connect(self):
        """Start or connect to the cluster (once) and return the :class:`distributed.Client`.

        Raises
        ------
        InvalidParameterError
            dask.distributed is missing, or the scheduler at ``address`` cannot be reached.
        """
        if self._client is not None:
            return self._client
        distributed = self._distributed()
        if self.address is None:
            # ":0": the scheduler's HTTP server takes a free port (several clusters per host)
            self._cluster = distributed.LocalCluster(
                n_workers=self.jobs or os.cpu_count() or 1, threads_per_worker=1,
                processes=True, dashboard_address=":0",
                scheduler_kwargs={"allowed_failures": self.allowed_failures},
            )
            self._client = distributed.Client(self._cluster, timeout=self.timeout)
        else:
            try:
                self._client = distributed.Client(self.address, timeout=self.timeout)
            except (OSError, TimeoutError) as exc:
                raise InvalidParameterError(
                    f"cannot reach the Dask scheduler at address {self.address!r} within "
                    f"{self.timeout:g} s ({type(exc).__name__}: {exc})"
                ) from None
        return self._client

    def imap_unordered(self, fn, tasks):
        if not tasks:
            return
        distributed = self._distributed()
        client = self.connect()
        run = uuid.uuid4().hex[:8]  # keys unique per call: a rerun never reuses old results
        name = getattr(fn, "__name__", "task")
        futures = {
            client.submit(fn, task, key=f"{name}-{run}-{i}", pure=False, retries=self.retries): i
            for i, task in enumerate(tasks)
        }
        try:
            for fut in distributed.as_completed(list(futures)):
                i = futures.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # task error, KilledWorker, cancelled, transport
                    yield i, None, exc
                else:
                    yield i, res, None
                fut.release()
        finally:
            if futures and client.status == "running":
                client.cancel(list(futures))  # the consumer stopped early: drop queued work

    def close(self, *, abort: bool = False) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


#: Executor classes by name (``impbench run --executor NAME``).
EXECUTORS: dict[str, type[Executor]] = {
    "dask": DaskExecutor,
    "local": LocalProcessExecutor,
    "serial": SerialExecutor,
}


def get_executor(
    name: str | Executor = "local", jobs: int | None = None, *, address: str | None = None
) -> Executor:
    """Build an executor by name; ``local`` with ``jobs == 1`` runs in-process.

    Parameters
    ----------
    name : str or Executor
        A name in :data:`EXECUTORS`, or a ready executor (returned unchanged, so that
        ``run_scenario(executor=DaskExecutor(address=...))`` works).
    jobs : int, optional
        Worker processes (``local``) or LocalCluster workers (``dask`` without address).
    address : str, optional
        Dask scheduler address (``dask`` only).

    Raises
    ------
    InvalidParameterError
        Unknown name, bad ``jobs``, or ``address`` with an executor other than ``dask``.
    """
    if isinstance(name, Executor):
        return name
    if name not in EXECUTORS:
        raise InvalidParameterError(
            f"unknown executor {name!r}; choose from {', '.join(sorted(EXECUTORS))}"
        )
    if address is not None and name != "dask":
        raise InvalidParameterError(
            f"address {address!r} is only used by the dask executor; got executor {name!r}"
        )
    if name == "dask":
        return DaskExecutor(jobs, address=address)
    if name == "local" and jobs == 1:
        return SerialExecutor()
    if name == "serial":
        return SerialExecutor()
    return EXECUTORS[name](jobs=jobs)
