"""`switch serve --workers N`: N processes, one event loop each, sharing every listening
port through SO_REUSEPORT; the kernel spreads connections over them. They share nothing
else but Redis, where all state lives, so any worker may answer any request.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from switch.app import run, serve_one
from switch.config import Config
from switch.logs import DEFAULT_LOGGING, LoggingSetup, configure_logging
from switch.redis_runner import free_port

WORKER_START_TIMEOUT_S = 30.0


def supervise(config: Config, redis_url: str, workers: int,
              on_ready: Callable[[dict[str, int]], None],
              logging_setup: LoggingSetup = DEFAULT_LOGGING) -> None:
    """Start the workers, announce once all listen, stop them all on SIGINT/SIGTERM; pass
    SIGHUP (reload the policy) on to them. Worker 0 alone serves the admin API, with every
    worker's counts (switch/admin/shared.py)."""
    for listener in config.listeners.values():
        if listener.port == 0:  # every worker must bind the same port
            listener.port = free_port()
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    taken = stop_signals | {signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, taken)  # taken with sigtimedwait below
    shares = Path(tempfile.mkdtemp(prefix="switch-counts-"))
    others = msgspec.structs.replace(config, admin=msgspec.structs.replace(config.admin,
                                                                           listen=""))
    processes = [context.Process(target=_worker, args=(
        config if i == 0 else others, redis_url, reports, logging_setup,
        (shares, i) if config.admin.listen else None),  # shares only for an admin API
        name=f"switch-worker-{i}") for i in range(workers)]
    try:
        for process in processes:
            process.start()
        ports = _await_ready(reports, workers)
        on_ready(ports)
        while all(p.is_alive() for p in processes):
            got = signal.sigtimedwait(taken, 0.5)
            if got is None:
                continue
            if got.si_signo != signal.SIGHUP:
                break
            for process in processes:  # worker 0 reloaded already when it asked
                if process.pid != got.si_pid:
                    os.kill(process.pid, signal.SIGHUP)
    finally:
        _stop(processes, config)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, taken)
        shutil.rmtree(shares, ignore_errors=True)


def _await_ready(reports, workers: int) -> dict[str, int]:
    ports: dict[str, int] = {}
    for _ in range(workers):
        try:
            kind, detail = reports.get(timeout=WORKER_START_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError("a worker did not start in time") from None
        if kind == "error":
            raise RuntimeError(f"a worker failed to start: {detail}")
        ports |= detail  # worker 0's has the admin port
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


def _worker(config: Config, redis_url: str, reports, logging_setup: LoggingSetup,
            share: tuple[Path, int] | None) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve_one takes it: a reload
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    configure_logging(*logging_setup)
    try:
        run(serve_one(config, redis_url, lambda ports: reports.put(("ready", ports)),
                      reuse_port=True, share=share))
    except Exception as error:  # reported to the supervisor, which stops everything
        reports.put(("error", f"{type(error).__name__}: {error}"))
        raise
