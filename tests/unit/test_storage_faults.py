"""Storage faults, without services: how a database or image-store error is told
apart from a job's own fault, and how a batch's wait logs and counts one.

The faults on real file systems, with real workers, are in
``tests/integration/test_storage_faults.py``. PostgreSQL's disk cannot be filled
safely on a shared machine, so its SQLSTATEs are classified here, from the
driver's own exception classes; the integration test makes a real server answer
an INSERT with SQLSTATE 53100.
"""

from __future__ import annotations

import errno
import logging

import psycopg.errors
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from core.blobs import BlobStoreUnwritable
from core.db import storage_fault_reason
from worker.retry import StorageFault, storage_fault, until_stored


def wrapped(error: Exception) -> OperationalError:
    """``error`` as SQLAlchemy raises it from the driver."""
    return OperationalError("INSERT INTO inspections ...", {}, error)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (psycopg.errors.DiskFull('could not extend file "base/1/2": No space left'), "full"),
        (psycopg.errors.OutOfMemory("out of memory"), "out_of_memory"),
        (psycopg.errors.InsufficientResources("insufficient resources"), "insufficient_resources"),
        (psycopg.errors.TooManyConnections("too many clients"), "insufficient_resources"),
    ],
)
def test_postgresql_resource_errors_are_storage_faults_by_sqlstate(error, reason):
    assert storage_fault_reason(wrapped(error)) == reason
    fault = storage_fault(wrapped(error))
    assert fault is not None and (fault.store, fault.reason) == ("database", reason)
    assert f"SQLSTATE {error.sqlstate}" in fault.message


def test_a_database_out_of_reach_is_unreachable_and_a_bad_row_is_no_storage_fault():
    refused = wrapped(psycopg.OperationalError("connection refused"))
    assert storage_fault_reason(refused) is None
    assert storage_fault(refused) == StorageFault(
        "database", "unreachable", "database unreachable (connection refused)"
    )
    # the statement's own fault: not waited out
    duplicate = IntegrityError("INSERT ...", {}, psycopg.errors.UniqueViolation("duplicate"))
    assert storage_fault(duplicate) is None
    assert storage_fault(ValueError("a bug")) is None


def test_sqlite_disk_full_is_a_storage_fault(tmp_path):
    # A real SQLITE_FULL: the database may not grow past its current pages.
    engine = create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x BLOB)"))
    with engine.connect() as connection:
        connection.execute(text("PRAGMA max_page_count = 2"))
        with pytest.raises(OperationalError) as raised:
            connection.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))
    engine.dispose()
    assert storage_fault_reason(raised.value) == "full"
    fault = storage_fault(raised.value)
    assert fault is not None
    assert fault.message == "the database is full (database or disk is full)"


@pytest.mark.parametrize(
    ("number", "reason", "says"),
    [
        (errno.ENOSPC, "full", "BLOB_DIR /data/blobs is full (ENOSPC)"),
        (errno.EROFS, "read_only", "BLOB_DIR /data/blobs is read-only (EROFS)"),
        (errno.EACCES, "permission", "BLOB_DIR /data/blobs is not writable by this user (EACCES)"),
        (errno.EIO, "io_error", "BLOB_DIR /data/blobs could not be written (EIO: I/O error)"),
    ],
)
def test_an_unwritable_blob_store_says_which_folder_and_why(number, reason, says):
    error = BlobStoreUnwritable("/data/blobs", OSError(number, "I/O error", "/data/blobs/ab"))
    assert isinstance(error, OSError) and error.errno == number  # callers catching OSError
    assert (error.reason, str(error)) == (reason, says)
    assert storage_fault(error) == StorageFault("blobs", reason, says)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_held_batch_logs_its_fault_once_and_its_recovery(caplog):
    full = BlobStoreUnwritable("/data/blobs", OSError(errno.ENOSPC, "No space left on device"))
    tries: list[float] = []
    faults = "inspection_storage_faults_total"
    before = sample(faults, store="blobs", reason="full")

    def store() -> str:
        tries.append(sample("inspection_storage_blocked", store="blobs"))
        if len(tries) <= 3:
            raise full
        return "stored"

    with caplog.at_level(logging.DEBUG, logger="worker.retry"):
        until_stored(store, sleep=lambda _: None, holding=7)
    assert tries == [0.0, 1.0, 1.0, 1.0]  # blocked from the first failure until stored
    assert sample("inspection_storage_blocked", store="blobs") == 0.0
    assert sample(faults, store="blobs", reason="full") == before + 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "BLOB_DIR /data/blobs is full (ENOSPC): holding a batch of 7 job(s) unacknowledged, "
        "retrying with backoff up to 30 s"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "storing again" in infos[0] and "7 held job(s)" in infos[0]


def test_a_fault_that_turns_into_another_is_logged_again_and_other_errors_pass(caplog):
    unreachable = wrapped(psycopg.OperationalError("connection refused"))
    full = wrapped(psycopg.errors.DiskFull("could not extend file"))
    errors = [unreachable, unreachable, full]

    def store() -> None:
        if errors:
            raise errors.pop(0)
        raise ValueError("a bug: raised at once, not waited out")

    with caplog.at_level(logging.INFO, logger="worker.retry"), pytest.raises(ValueError):
        until_stored(store, sleep=lambda _: None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(":")[0] for w in warnings] == [
        "database unreachable (connection refused)",
        "the database is full (SQLSTATE 53100",
    ]
    assert sample("inspection_storage_blocked", store="database") == 0.0  # not stuck at 1
    assert not [r for r in caplog.records if "storing again" in r.getMessage()]
