"""What the worker overrides or relies on inside kombu and Celery, pinned.

``worker/transport.py`` replaces two private methods of kombu's Redis channel
(with copies of their logic) and wraps its message class; ``worker/consumer.py``
replaces Celery consumer methods; ``worker/default_queue.py`` names kombu's
priority lists. pyproject.toml pins the versions these were written against.
If an upgrade changes any of this code, this test fails: read the new code,
carry the change into the override, then update the hash here.
"""

from __future__ import annotations

import hashlib
import inspect

import celery
import kombu
from celery.worker.consumer import consumer as celery_consumer
from kombu import messaging
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual

from worker.default_queue import PRIORITY_SEPARATOR

# what the overrides were written against (the pins in pyproject.toml)
KOMBU_VERSION = "5.5.4"
CELERY_VERSION = "5.5.3"

OVERRIDDEN = {
    # worker/transport.py: fetch with BLMOVE, rescue, unreadable items
    "kombu.transport.redis.Channel._brpop_start": (
        kombu_redis.Channel._brpop_start,
        "1d125c1e720ad5a6",
    ),
    "kombu.transport.redis.Channel._brpop_read": (
        kombu_redis.Channel._brpop_read,
        "9a9f7f5a6ad96f48",
    ),
    "kombu.transport.redis.Channel._q_for_pri": (
        kombu_redis.Channel._q_for_pri,
        "f3997660680dd00f",
    ),
    "kombu.transport.redis.QoS.append": (kombu_redis.QoS.append, "35c655f6ecc62fe6"),
    "kombu.transport.virtual.Message.__init__": (virtual.Message.__init__, "c90d08ccfa2e3e9a"),
    "kombu.transport.virtual.Channel.basic_consume": (
        virtual.Channel.basic_consume,
        "0fec962694938b61",
    ),
    # worker/restore.py
    "kombu.transport.redis.QoS.restore_visible": (
        kombu_redis.QoS.restore_visible,
        "56ab7a42978335ce",
    ),
    # worker/consumer.py: every message checked before Celery acts on it
    "kombu.messaging.Consumer._receive_callback": (
        messaging.Consumer._receive_callback,
        "27e1ae8eba4c10ff",
    ),
    "celery.worker.consumer.Consumer.create_task_handler": (
        celery_consumer.Consumer.create_task_handler,
        "e415cb6404011971",
    ),
    "celery.worker.consumer.Consumer.on_decode_error": (
        celery_consumer.Consumer.on_decode_error,
        "e3538c586a7ffa75",
    ),
    "celery.worker.consumer.Consumer.on_unknown_message": (
        celery_consumer.Consumer.on_unknown_message,
        "213bd3ee55cb5ca6",
    ),
    "celery.worker.consumer.Consumer.on_unknown_task": (
        celery_consumer.Consumer.on_unknown_task,
        "35e6cbe564947a25",
    ),
    "celery.worker.consumer.Consumer.on_invalid_task": (
        celery_consumer.Consumer.on_invalid_task,
        "9893e7a4eee33a33",
    ),
}


def source_hash(obj: object) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def test_the_versions_the_overrides_were_written_against():
    assert kombu.__version__ == KOMBU_VERSION, (
        f"kombu {kombu.__version__} is installed; worker/transport.py was written against "
        f"{KOMBU_VERSION}: check test_kombu_and_celery_code_the_worker_overrides_is_unchanged"
    )
    assert celery.__version__ == CELERY_VERSION


def test_kombu_and_celery_code_the_worker_overrides_is_unchanged():
    changed = [name for name, (obj, expected) in OVERRIDDEN.items() if source_hash(obj) != expected]
    assert not changed, (
        f"kombu {kombu.__version__} / Celery {celery.__version__} changed code the worker "
        f"overrides or relies on: {', '.join(changed)}. Read the new code, carry the change "
        "into worker/transport.py or worker/consumer.py, then update the hashes here."
    )


def test_priority_lists_are_named_as_worker_default_queue_assumes():
    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)
    assert channel._q_for_pri("celery", 3) == f"celery{PRIORITY_SEPARATOR}3"
    assert channel._q_for_pri("celery", 0) == "celery"
