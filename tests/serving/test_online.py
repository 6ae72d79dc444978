"""The Feast-free online reader must return exactly what Feast's own online read returns."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from down_services import SilentServer, closed_port, start_server
from service_checks import service_missing
from serving_fixtures import COURSE, SERVICE, STUDENT_FULL, STUDENT_NEW, ServingWorld

from serving._online import OnlineFeatureReader, decode_value, serialize_entity_key


@pytest.mark.parametrize(("join_key", "value"), [("student_course", "11391:AAA-2013J"), ("id_student", 11391),
                                                 ("course", "AAA-2013J"), ("id_student", -5)])
def test_entity_keys_match_feast_serialization(join_key, value):
    from feast.infra.key_encoding_utils import serialize_entity_key as feast_serialize
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    proto_value = Value(string_val=value) if isinstance(value, str) else Value(int64_val=value)
    expected = feast_serialize(EntityKey(join_keys=[join_key], entity_values=[proto_value]),
                               entity_key_serialization_version=3)
    assert serialize_entity_key(join_key, value) == expected


def test_value_decoding_covers_proto_only_rows():
    from feast.protos.feast.types.Value_pb2 import Value

    assert decode_value(None, Value(double_val=-2.5).SerializeToString()) == -2.5
    assert decode_value(None, Value(int64_val=-7).SerializeToString()) == -7.0
    assert decode_value(None, Value(bool_val=True).SerializeToString()) == 1.0
    assert math.isnan(decode_value(None, Value().SerializeToString()))
    assert decode_value("0.125", b"") == 0.125


def _reader(world: ServingWorld) -> OnlineFeatureReader:
    return OnlineFeatureReader(db_path=world.settings.feast_dir / "online_store.db", project="learnloop",
                               service=SERVICE)


@pytest.mark.parametrize("student", [STUDENT_FULL, STUDENT_NEW, 424242])
def test_reader_matches_feast_get_online_features(serving_world: ServingWorld, student: int):
    from pipelines.api import get_online_features

    reader = _reader(serving_world)
    row = reader.read(student_id=student, course_id=COURSE)
    ours = reader.fill(row.values)
    theirs = get_online_features(service=SERVICE, entity_rows=[{"student_course": f"{student}:{COURSE}"}])
    expected = theirs[serving_world.feature_names].to_numpy(dtype=float)[0]
    assert reader.feature_names == serving_world.feature_names
    np.testing.assert_array_equal(ours, expected)  # NaN positions and values identical


def test_fill_policy_is_the_shared_one(serving_world: ServingWorld):
    reader = _reader(serving_world)
    filled = reader.fill(np.full(len(reader.feature_names), np.nan))
    flags = {name for name, value in zip(reader.feature_names, filled, strict=True) if value == 0.0}
    assert flags == {"has_click_data", "course_has_click_data"}
    assert np.isnan(filled).sum() == len(filled) - 2


@pytest.mark.parametrize(("view", "feature"), [("student_course_activity", "clicks_total_7d"),
                                               ("course_cohort", "course_has_click_data"), ("ü_view", "x")])
def test_redis_hash_fields_match_feast(view, feature):
    from feast.infra.online_stores.helpers import _mmh3

    from serving._online import redis_field

    assert redis_field(view, feature) == _mmh3(f"{view}:{feature}")


def test_redis_connection_strings_parse_like_feast():
    from serving._online import _redis_client

    client = _redis_client("10.1.2.3:6380,password=secret,db=2")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["password"], kwargs["db"]) == ("10.1.2.3", 6380, "secret", 2)


def test_batch_fill_applies_the_policy_per_row(serving_world: ServingWorld):
    reader = _reader(serving_world)
    raw = np.full((3, len(reader.feature_names)), np.nan)
    raw[1, 0] = 5.0
    filled = reader.fill(raw)
    flags = [i for i, name in enumerate(reader.feature_names) if name in {"has_click_data", "course_has_click_data"}]
    assert (filled[:, flags] == 0.0).all()
    assert filled[1, 0] == 5.0 and np.isnan(filled[0, 0])
    assert np.isnan(raw[0]).all()  # the input is not filled in place


def test_unknown_online_store_type_is_refused():
    from learnloop.errors import InvalidInput
    from serving._online import open_online_reader

    with pytest.raises(InvalidInput, match="dynamodb"):
        open_online_reader(service=SERVICE, online_store="dynamodb", project="learnloop")


def test_model_service_reads_the_configured_online_store(serving_world: ServingWorld, monkeypatch):
    """Switching LEARNLOOP_FEAST_ONLINE_STORE to redis switches the model service's reader, no code change."""
    from learnloop.settings import get_settings
    from serving._online import RedisFeatureReader
    from serving._scorer import ChampionWatcher

    assert isinstance(ChampionWatcher(settings=serving_world.settings)._reader(SERVICE), OnlineFeatureReader)
    monkeypatch.setenv("LEARNLOOP_FEAST_ONLINE_STORE", "redis")
    monkeypatch.setenv("LEARNLOOP_FEAST_REDIS_CONNECTION", "127.0.0.1:6379")
    get_settings.cache_clear()
    reader = ChampionWatcher(settings=get_settings())._reader(SERVICE)
    assert isinstance(reader, RedisFeatureReader)


def test_redis_reader_fails_fast_when_redis_is_down():
    """Nothing listens on the Redis port: the read is Unavailable at once (the model service answers 503 and the
    platform its fallback). redis-py's default retries with backoff held the model service's event loop 3-10 s."""
    from learnloop.errors import Unavailable
    from serving._online import RedisFeatureReader

    reader = RedisFeatureReader(connection=f"127.0.0.1:{closed_port()}", project="learnloop", service=SERVICE)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="Redis"):
            reader.read(student_id=STUDENT_FULL, course_id=COURSE)
        assert time.monotonic() - started < 0.5


def test_a_hung_redis_holds_one_read_per_retry_window():
    """Redis accepts connections and never answers: one read waits for the socket timeout, the reads after it are
    Unavailable at once until the retry window has passed (each used to wait for four timeouts and backoffs)."""
    from learnloop.errors import Unavailable
    from serving._online import RedisFeatureReader

    with SilentServer() as redis_server:
        reader = RedisFeatureReader(connection=f"127.0.0.1:{redis_server.port}", project="learnloop",
                                    service=SERVICE)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            reader.read(student_id=STUDENT_FULL, course_id=COURSE)
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(Unavailable, match="s ago"):
                reader.read(student_id=STUDENT_FULL, course_id=COURSE)
        assert time.monotonic() - started < 0.5  # well inside the retry window (2 s)
        assert redis_server.connections == 1


@pytest.mark.integration
def test_redis_reader_reads_again_once_redis_is_back(tmp_path, monkeypatch):
    """A Redis of our own is stopped and started again: reads are Unavailable while it is down and succeed once it
    is back and the retry window has passed, on the same reader (no restart of the model service)."""
    import shutil
    import subprocess

    from learnloop.errors import Unavailable
    from serving import _online

    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed (Debian package redis-server)")
    monkeypatch.setattr(_online, "REDIS_RETRY_AFTER_S", 0.2, raising=False)
    port = closed_port()

    def start() -> subprocess.Popen:
        return start_server([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], port, "redis-server")

    server = start()
    try:
        reader = _online.RedisFeatureReader(connection=f"127.0.0.1:{port}", project="learnloop", service=SERVICE)
        assert reader.read(student_id=STUDENT_FULL, course_id=COURSE).views_found == frozenset()  # empty store
        server.terminate()
        server.wait(timeout=10)
        with pytest.raises(Unavailable):
            reader.read(student_id=STUDENT_FULL, course_id=COURSE)
        server = start()
        time.sleep(0.3)
        assert reader.read(student_id=STUDENT_FULL, course_id=COURSE).views_found == frozenset()
    finally:
        server.terminate()
        server.wait(timeout=10)
