"""The same parity check against the real Redis online store and PostgreSQL SQL registry on this machine,
switched by settings alone. Each run uses its own PostgreSQL schema and Feast project (Redis keys carry it)."""

from __future__ import annotations

import uuid

import pytest
from feature_fixtures import assert_online_offline_parity, build_store
from service_checks import service_missing

from features.api import feature_names, service_names
from learnloop.settings import FeastOnlineStore, Settings

pytestmark = pytest.mark.integration

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def scale_built(tmp_path_factory: pytest.TempPathFactory, oulad):
    psycopg = pytest.importorskip("psycopg")
    redis = pytest.importorskip("redis")
    run = uuid.uuid4().hex[:10]
    schema, project = f"feast_test_{run}", f"learnloop_test_{run}"
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True, connect_timeout=3)
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except (psycopg.OperationalError, redis.exceptions.ConnectionError) as exc:
        service_missing(f"PostgreSQL/Redis not reachable on 127.0.0.1: {exc}")
    admin.execute(f'CREATE SCHEMA "{schema}"')
    settings = Settings(data_dir=tmp_path_factory.mktemp("feast-scale") / "var",
                        feast_online_store=FeastOnlineStore.redis, feast_redis_connection="127.0.0.1:6379",
                        feast_registry_url=f"{PG}?options=-csearch_path%3D{schema}")
    settings.ensure_dirs()
    built = build_store(settings, oulad, project=project)
    try:
        yield built
    finally:
        built.store.teardown()  # deletes this project's Redis keys and registry rows
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def test_scale_config_really_uses_redis_and_postgres(scale_built) -> None:
    config = scale_built.store.config
    assert config.online_store.type == "redis"
    assert config.registry.path.startswith("postgresql+psycopg://")
    import redis

    keys = redis.Redis(host="127.0.0.1", port=6379).keys(f"*{config.project}*")
    assert keys, "materialization wrote nothing to Redis"


def test_redis_and_postgres_pass_the_same_parity_test(scale_built) -> None:
    assert assert_online_offline_parity(scale_built) == sum(len(feature_names(s)) for s in service_names())


def test_scale_store_reads_its_own_parquet_sources(scale_built) -> None:
    for view in scale_built.store.list_feature_views():
        assert view.batch_source.path.startswith(str(scale_built.settings.feast_dir)), view.batch_source.path


def test_serving_reads_redis_directly_and_batches_equal_single_reads(scale_built) -> None:
    import numpy as np
    import pandas as pd

    from pipelines._online import reader_for

    reader = reader_for(scale_built.store, "student_risk_v1")
    assert type(reader).__name__ == "RedisFeatureReader"  # Feast's Redis layout read directly, no Feast python path
    regs = pd.read_parquet(scale_built.settings.feast_dir / "data" / "registrations.parquet")
    rows = [{"student_course": key, "id_student": int(key.split(":")[0]), "course": key.split(":")[1]}
            for key in regs["student_course"].iloc[:15]]
    batch = reader.read_rows(rows)
    single = np.vstack([reader.read(student_id=r["id_student"], course_id=r["course"]).values for r in rows])
    np.testing.assert_array_equal(batch, single)
    assert (~np.isnan(batch)).sum() > 15 * 10
    found = reader.read(student_id=rows[0]["id_student"], course_id=rows[0]["course"]).views_found
    assert "student_course_profile" in found
