"""tiling.runtime: one thread setting (argument, then WBC_N_JOBS, then all cores) and its pool."""

import os
import threading

import pytest

from tiling.runtime import ENV_VAR, close_pool, parallel_map, resolve_n_jobs


def test_argument_then_environment_then_all_cores(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_n_jobs() == (os.cpu_count() or 1)
    monkeypatch.setenv(ENV_VAR, "3")
    assert resolve_n_jobs() == 3
    assert resolve_n_jobs(5) == 5  # an explicit argument wins
    monkeypatch.setenv(ENV_VAR, "-1")
    assert resolve_n_jobs() == (os.cpu_count() or 1)


def test_negative_counts_back_from_all_cores_and_never_below_one():
    cores = os.cpu_count() or 1
    assert resolve_n_jobs(-1) == cores
    assert resolve_n_jobs(-2) == max(1, cores - 1)
    assert resolve_n_jobs(-1000) == 1


def test_bad_settings_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="n_jobs=0"):
        resolve_n_jobs(0)
    monkeypatch.setenv(ENV_VAR, "many")
    with pytest.raises(ValueError, match="WBC_N_JOBS='many' is not an integer"):
        resolve_n_jobs()


def test_parallel_map_keeps_order_and_uses_worker_threads():
    names = parallel_map(lambda i: (i, threading.current_thread().name), range(12), n_jobs=3)
    assert [i for i, _ in names] == list(range(12))
    assert all(name.startswith("wbc-worker") for _, name in names)
    serial = parallel_map(lambda i: threading.current_thread().name, range(4), n_jobs=1)
    assert set(serial) == {threading.current_thread().name}


def test_closed_pool_is_rebuilt_on_next_use():
    assert parallel_map(lambda x: x * 2, [1, 2, 3], n_jobs=2) == [2, 4, 6]
    close_pool()
    assert not any(t.name.startswith("wbc-worker") and t.is_alive() for t in threading.enumerate())
    assert parallel_map(lambda x: x + 1, [1, 2], n_jobs=2) == [2, 3]
    close_pool()
