"""`switch serve --workers N`: N processes, one event loop each, sharing every listening
port through SO_REUSEPORT; the kernel spreads connections over them. They share nothing
else but Redis, where all state lives, so any worker may answer any request.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from collections.abc import Callable

from switch.app import run, serve_one
from switch.config import Config
from switch.logs import DEFAULT_LOGGING, LoggingSetup, configure_logging
from switch.redis_runner import free_port

WORKER_START_TIMEOUT_S = 30.0


def supervise(config: Config, redis_url: str, workers: int,
              on_ready: Callable[[dict[str, int]], None],
              logging_setup: LoggingSetup = DEFAULT_LOGGING) -> None:
    """Start the workers, announce once all listen, stop them all on SIGINT/SIGTERM."""
    for listener in config.listeners.values():
        if listener.port == 0:  # every worker must bind the same port
            listener.port = free_port()
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # taken with sigtimedwait below
    processes = [context.Process(target=_worker,
                                 args=(config, redis_url, reports, logging_setup),
                                 name=f"switch-worker-{i}") for i in range(workers)]
    try:
        for process in processes:
            process.start()
        ports = _await_ready(reports, workers)
        on_ready(ports)
        while all(p.is_alive() for p in processes):
            if signal.sigtimedwait(stop_signals, 0.5) is not None:
                break
    finally:
        _stop(processes, config)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)


def _await_ready(reports, workers: int) -> dict[str, int]:
    ports: dict[str, int] = {}
    for _ in range(workers):
        try:
            kind, detail = reports.get(timeout=WORKER_START_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError("a worker did not start in time") from None
        if kind == "error":
            raise RuntimeError(f"a worker failed to start: {detail}")
        ports = detail
    return ports


def _stop(processes, config: Config) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: each worker shuts down gracefully
    bound_s = config.server_limits.shutdown_grace_s + config.server_limits.shutdown_linger_s + 5.0
    for process in processes:
        process.join(timeout=bound_s)
        if process.is_alive():
            process.kill()
            process.join()


def _worker(config: Config, redis_url: str, reports, logging_setup: LoggingSetup) -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    configure_logging(*logging_setup)
    try:
        run(serve_one(config, redis_url, lambda ports: reports.put(("ready", ports)),
                      reuse_port=True))
    except Exception as error:  # reported to the supervisor, which stops everything
        reports.put(("error", f"{type(error).__name__}: {error}"))
        raise
