"""Settings, image store, image checks, job messages and the verdict rule."""

from __future__ import annotations

import base64
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.blobs import BlobStore
from core.images import ImageRejected, decode_image
from core.inbox import read_inbox_file
from core.jobs import InspectJob, JobInvalid, decode_b64_image
from core.settings import (
    Settings,
    SettingsError,
    markdown_table,
    settings_from_env,
    settings_to_env,
)
from core.verdict import ReferenceSet, decide, decide_batch
from tests.conftest import ROOT, png_bytes, sample_images

MB = 1024 * 1024


def test_settings_defaults_need_no_variables():
    settings = settings_from_env({})
    assert settings.database_url == "sqlite:///var/inspection.db"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.blob_dir == Path("var/blobs")
    assert settings.model_checkpoint is None
    assert len(settings.secret_key) >= 32 and not settings.is_production


def test_settings_fail_fast_with_a_clear_message():
    with pytest.raises(SettingsError, match="SECRET_KEY is required"):
        settings_from_env({"INSPECTION_ENV": "production"})
    with pytest.raises(SettingsError, match="MAX_IMAGE_BYTES must be a whole number"):
        settings_from_env({"MAX_IMAGE_BYTES": "lots"})
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        settings_from_env({"DATABASE_URL": "inspection.db"})
    production = settings_from_env({"INSPECTION_ENV": "production", "SECRET_KEY": "s" * 40})
    assert production.cookie_secure


def test_settings_survive_the_trip_to_a_child_process_environment():
    changed = Settings(
        database_url="postgresql+psycopg://u@db/line",
        redis_url="redis://broker:6379/3",
        blob_dir=Path("/data/blobs"),
        inbox_dir=Path("/data/inbox"),
        model_checkpoint=Path("runs/line-7/checkpoint.pt"),
        frame_checkpoint=Path("runs/line-7/frames.pt"),
        secret_key="k" * 40,
        environment="production",
        match_threshold=0.86,
        max_image_bytes=1234567,
        max_image_pixels=7654321,
        model_device="cpu",
        log_level="WARNING",
        log_format="json",
        worker_metrics_port=0,
        worker_metrics_host="0.0.0.0",
        worker_remote_control=True,
        cookie_secure=True,
        plant_timezone="Europe/Berlin",
        inspect_batch_size=7,
        inspect_batch_wait_ms=9,
        visibility_timeout_s=99,
        worker_lost_after_s=3.0,
        model_threads=3,
        spool_dir=Path("/data/spool"),
        max_queue_length=11,
        spool_max_bytes=12345,
        worker_dispatch=False,
        line_name="hot-strip-2",
        coil_end_after_s=42.0,
        shifts="07:00,19:00",
        mqtt_url="mqtt://plant-broker:1883",
        mqtt_topic_prefix="plant",
        delivery_max_attempts=3,
        event_retention_days=7,
        webhook_timeout_s=2.5,
    )
    # every field differs from its default, so a field the inverse forgets fails here
    defaults = settings_from_env({})
    assert all(getattr(changed, f) != getattr(defaults, f) for f in Settings.model_fields)
    assert settings_from_env(settings_to_env(changed)) == changed
    # demo: cookies not secure, a random secret key
    assert settings_from_env(settings_to_env(defaults)) == defaults


def test_the_readme_lists_every_variable_as_declared():
    # the table is printed from the declarations: `python -m core.settings`
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "paste `python -m core.settings` into the README"
    for variable in ("DATABASE_URL", "BROKER_VISIBILITY_TIMEOUT", "WORKER_REMOTE_CONTROL"):
        assert f"| `{variable}` |" in markdown_table()


def test_settings_explain_every_kind_of_mistake():
    for env, message in (
        ({"INSPECT_BATCH_SIZE": "0"}, "INSPECT_BATCH_SIZE must be at least 1, got '0'"),
        ({"BROKER_VISIBILITY_TIMEOUT": "2"}, "BROKER_VISIBILITY_TIMEOUT must be at least 5"),
        ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE must be 1/true/yes or 0/false/no"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of 'text' or 'json'"),
        ({"MATCH_THRESHOLD": "-1"}, "MATCH_THRESHOLD must be at least 0"),
        ({"MATCH_THRESHOLD": "near"}, "MATCH_THRESHOLD must be a number"),
        ({"REDIS_URL": "localhost"}, "REDIS_URL must start with redis://"),
        ({"INSPECTION_ENV": "staging"}, "INSPECTION_ENV must be one of 'demo' or 'production'"),
    ):
        with pytest.raises(SettingsError, match=re.escape(message)):
            settings_from_env(env)
    # an empty variable counts as unset
    assert settings_from_env({"MAX_IMAGE_BYTES": ""}).max_image_bytes == 8 * MB


def test_blob_store_is_content_addressed_and_atomic(tmp_path):
    store = BlobStore(tmp_path)
    key = store.put(b"steel")
    assert key == store.put(b"steel")  # same bytes, same key, one file
    assert store.get(key) == b"steel" and store.exists(key)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and not files[0].name.startswith(".tmp")
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_decode_accepts_the_sample():
    image = decode_image(sample_images()[0].read_bytes(), 8 * MB, 40_000_000)
    assert image.size == (200, 200)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a-but-not-really", "not an image"),
        (b"hello, this is text", "not an image"),
        (b"<html><body>login</body></html>", "not an image"),
    ],
)
def test_decode_rejects_bad_input_with_a_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        decode_image(data, 8 * MB, 40_000_000)


def test_decode_rejects_truncated_oversized_and_huge_images():
    good = sample_images()[0].read_bytes()
    with pytest.raises(ImageRejected, match="truncated"):
        decode_image(good[: len(good) // 2], 8 * MB, 40_000_000)
    with pytest.raises(ImageRejected, match="over the limit"):
        decode_image(good, 100, 40_000_000)
    huge = png_bytes(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageRejected, match="3000x3000 pixels"):
        decode_image(huge, 8 * MB, 1_000_000)


def test_a_rejection_never_quotes_what_the_file_holds():
    # An image_path job once read a file outside the inbox, and its first bytes
    # were shown to the sender in the rejection; no error echoes the data now.
    with pytest.raises(ImageRejected) as refused:
        decode_image(b"root:x:0:0:root:/root:/bin/bash\n", MB, 10_000)
    assert "root" not in str(refused.value) and "32 bytes" in str(refused.value)


def test_job_message_round_trip_and_checks(tmp_path):
    job = InspectJob.for_image_bytes(b"abc", "cam-1", meta={"coil": "A17"})
    message = job.to_message()
    again = InspectJob.from_message(message)
    assert again.job_id == job.job_id and again.camera == "cam-1" and again.meta == {"coil": "A17"}
    assert decode_b64_image(again.image_b64, 100) == b"abc"

    broken = {**message, "job_id": "not-a-uuid"}
    with pytest.raises(JobInvalid, match="job_id must be a UUID"):
        InspectJob.from_message(broken)
    with pytest.raises(JobInvalid, match="no camera"):
        InspectJob.from_message({k: v for k, v in message.items() if k != "camera"})
    with pytest.raises(JobInvalid, match="exactly one of"):
        InspectJob.from_message({**message, "image_path": "a.png"})
    with pytest.raises(JobInvalid, match="captured_at"):
        InspectJob.from_message({**message, "captured_at": 12})
    with pytest.raises(JobInvalid, match="not valid base64"):
        decode_b64_image("@@@@", 100)
    with pytest.raises(JobInvalid, match="more than 10 bytes"):
        decode_b64_image(base64.b64encode(b"x" * 100).decode(), 10)


def test_image_path_must_stay_inside_the_inbox(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "day").mkdir(parents=True)
    (inbox / "a.png").write_bytes(b"a")
    (inbox / "day" / "b.png").write_bytes(b"b")
    (tmp_path / "secret.png").write_bytes(b"secret")
    assert read_inbox_file("a.png", inbox, 100) == b"a"
    assert read_inbox_file("day/b.png", inbox, 100) == b"b"
    assert read_inbox_file(str(inbox / "day" / "b.png"), inbox, 100) == b"b"
    for outside in ("../secret.png", str(tmp_path / "secret.png"), "day/../../secret.png"):
        with pytest.raises(JobInvalid, match="outside the inbox"):
            read_inbox_file(outside, inbox, 100)
    with pytest.raises(JobInvalid, match="does not exist"):
        read_inbox_file("missing.png", inbox, 100)
    with pytest.raises(ImageRejected, match="over the limit of 5 bytes"):
        (inbox / "big.png").write_bytes(b"x" * 6)
        read_inbox_file("big.png", inbox, 5)
    with pytest.raises(JobInvalid, match="names the inbox folder itself"):
        read_inbox_file(str(inbox), inbox, 100)


def test_image_path_follows_no_link_and_reads_only_plain_files(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "secret.png").write_bytes(b"secret")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.png").write_bytes(b"c")
    (inbox / "inside.png").write_bytes(b"inside")
    os.symlink(tmp_path / "secret.png", inbox / "out.png")
    os.symlink(inbox / "inside.png", inbox / "in.png")  # even one that stays inside
    os.symlink(tmp_path / "elsewhere", inbox / "linked-folder")
    for linked in ("out.png", "in.png", "linked-folder/c.png"):
        with pytest.raises(JobInvalid, match="symbolic link"):
            read_inbox_file(linked, inbox, 100)
    os.link(tmp_path / "secret.png", inbox / "hard.png")
    with pytest.raises(JobInvalid, match="2 hard links"):
        read_inbox_file("hard.png", inbox, 100)
    os.mkfifo(inbox / "pipe.png")
    with pytest.raises(JobInvalid, match="not a regular file"):
        read_inbox_file("pipe.png", inbox, 100)  # and does not block
    (inbox / "folder.png").mkdir()
    with pytest.raises(JobInvalid, match="not a regular file"):
        read_inbox_file("folder.png", inbox, 100)


def references(kinds: list[str]) -> ReferenceSet:
    vectors = np.eye(len(kinds), 4, dtype=np.float32)
    labels = [f"label{i}" for i in range(len(kinds))]
    return ReferenceSet(list(range(1, len(kinds) + 1)), labels, kinds, vectors, "v1")


def test_verdict_nearest_reference_within_threshold_decides():
    refs = references(["defect", "ok"])
    flagged = decide(np.array([0.1, 1.2]), refs, threshold=0.5)
    assert (flagged.status, flagged.label, flagged.nearest_reference_id) == ("flagged", "label0", 1)
    assert [d["reference_id"] for d in flagged.distances] == [1, 2]
    passed = decide(np.array([1.2, 0.1]), refs, threshold=0.5)
    assert (passed.status, passed.label) == ("passed", "label1")
    unknown = decide(np.array([0.9, 0.8]), refs, threshold=0.5)
    assert (unknown.status, unknown.label, unknown.dissimilarity) == ("flagged", "unknown", 0.8)


def test_verdict_batch_matches_single_and_handles_no_references():
    refs = references(["defect", "ok", "defect"])
    embeddings = np.array([[1, 0, 0, 0], [0, 1, 0.1, 0], [5, 5, 5, 5]], dtype=np.float32)
    verdicts = decide_batch(embeddings, refs, threshold=0.5)
    assert [v.status for v in verdicts] == ["flagged", "passed", "flagged"]
    assert verdicts[2].label == "unknown"
    empty = decide_batch(embeddings, ReferenceSet.empty(4), threshold=0.5)
    assert all(v.label == "unknown" and v.dissimilarity is None for v in empty)


def test_job_ids_are_uuids():
    job = InspectJob.for_image_bytes(b"abc", "cam")
    assert uuid.UUID(job.job_id).version == 4
