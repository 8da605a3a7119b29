"""Pluggable executors that run work units and yield their results as they complete.

An executor takes a picklable top-level function and a list of tasks and yields
``(index, result, error)`` triples in completion order, one per task: ``error`` is the
exception raised while running or transporting the task (``result`` is then None). The
runner only sees this interface, so a distributed backend (``--executor dask``, a later
issue) is one more subclass registered in :data:`EXECUTORS`.
"""

from __future__ import annotations

import abc
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, ClassVar

from bench.errors import InvalidParameterError

__all__ = ["EXECUTORS", "Executor", "LocalProcessExecutor", "SerialExecutor", "get_executor"]


class Executor(abc.ABC):
    """Runs tasks; subclasses implement :meth:`imap_unordered`."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def imap_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        """Yield ``(index, fn(tasks[index]), None)`` or ``(index, None, error)`` per task."""

    def close(self) -> None:  # noqa: B027 - a do-nothing hook, overridden where needed
        """Release workers (no-op by default)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        self._pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)), mp_context=ctx)
        futures = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            exc = fut.exception()
            yield futures[fut], (None if exc else fut.result()), exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


#: Executor classes by name (``impbench run --executor NAME``).
EXECUTORS: dict[str, type[Executor]] = {"local": LocalProcessExecutor, "serial": SerialExecutor}


def get_executor(name: str = "local", jobs: int | None = None) -> Executor:
    """Build an executor by name; ``local`` with ``jobs == 1`` runs in-process.

    Raises
    ------
    InvalidParameterError
        Unknown name or bad ``jobs``.
    """
    if name not in EXECUTORS:
        raise InvalidParameterError(
            f"unknown executor {name!r}; choose from {', '.join(sorted(EXECUTORS))}"
        )
    if name == "local" and jobs == 1:
        return SerialExecutor()
    if name == "serial":
        return SerialExecutor()
    return EXECUTORS[name](jobs=jobs)
