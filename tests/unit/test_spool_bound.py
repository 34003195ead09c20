"""The producer's spool is bounded (SPOOL_MAX_BYTES): a full spool makes the camera
wait for Redis; nothing is dropped. No services: Redis is a port nobody listens on."""

from __future__ import annotations

import socket
import threading

from core.settings import settings_from_env
from producer.client import InspectionClient
from producer.spool import Spool
from tests.conftest import sample_images


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens


def test_the_spool_counts_its_bytes_as_files_come_and_go(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert spool.size_bytes() == 0
    first = spool.put({"job_id": "a", "image_b64": "x" * 1000})
    spool.put({"job_id": "b", "image_b64": "y" * 500})
    on_disk = sum(p.stat().st_size for p in (tmp_path / "spool").glob("*.json"))
    assert spool.size_bytes() == on_disk
    claimed = next(c for c, m in spool.claim() if m["job_id"] == "a")
    assert claimed.name == first.name + ".sending"
    assert spool.size_bytes() == on_disk  # a message being sent still takes its room
    sent = claimed.stat().st_size
    spool.done(claimed)
    assert spool.size_bytes() == on_disk - sent
    # another process sharing the folder: its files count from the next recount
    assert Spool(tmp_path / "spool").size_bytes() == spool.size_bytes()


def test_a_file_claimed_by_another_producer_between_listing_and_reading_is_skipped(
    tmp_path, monkeypatch
):
    spool = Spool(tmp_path / "spool")
    spool.put({"job_id": "kept"})
    listed = [*(tmp_path / "spool").glob("*.json"), tmp_path / "spool" / "gone.json"]
    # the folder listed a file another producer renamed (claimed) before it was read
    monkeypatch.setattr(type(tmp_path), "glob", lambda self, pattern: iter(listed))
    assert [m["job_id"] for c, m in spool.claim()] == ["kept"]


def test_a_full_spool_makes_the_camera_wait_and_drops_nothing(tmp_path):
    image = sample_images()[0].read_bytes()
    settings = settings_from_env({}).model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{closed_port()}/0",
            "spool_dir": tmp_path / "spool",
            # more than one message of this image (its base64 and the JSON around
            # it), less than two: the second is spooled (the spool was below the
            # bound), the third waits
            "spool_max_bytes": len(image) * 4 // 3 + 1024,
        }
    )
    client = InspectionClient(settings)
    try:
        first = client.submit_bytes(image, "bounded-cam")
        second = client.submit_bytes(image, "bounded-cam")
        spooled = {p.stem for p in settings.spool_dir.glob("*.json")}
        assert spooled == {first, second}

        third: list[str] = []
        camera = threading.Thread(
            target=lambda: third.append(client.submit_bytes(image, "bounded-cam")), daemon=True
        )
        camera.start()
        camera.join(4)
        assert camera.is_alive(), "the third image was taken although the spool was full"
        # the client's drainer may hold one message claimed (`<id>.json.sending`)
        # while it retries Redis: it still counts, under its job id
        assert {p.name.split(".")[0] for p in settings.spool_dir.glob("*.json*")} == spooled

        # another producer sharing the spool sends one message (whichever the
        # camera's own retry is not holding at that moment): room again
        other = Spool(settings.spool_dir)
        sent_claim, sent = next(other.claim())
        other.done(sent_claim)
        camera.join(60)
        assert not camera.is_alive()
        left = {p.stem for p in settings.spool_dir.glob("*.json")}
        assert left == (spooled - {sent["job_id"]}) | {third[0]}
        assert client.waited_for_spool_s > 0
    finally:
        client.close()
