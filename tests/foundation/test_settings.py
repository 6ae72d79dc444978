from __future__ import annotations

import pytest
from pydantic import ValidationError

from learnloop.settings import DEV_SECRET, Settings


def test_every_path_lives_under_the_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path / "d")
    root = (tmp_path / "d").resolve()
    for path in (settings.feast_dir, settings.mlflow_artifacts_dir, settings.bentoml_home, settings.qdrant_path,
                 settings.reports_dir, settings.cache_dir):
        assert root in path.parents
    assert settings.sqlalchemy_url == f"sqlite:///{root / 'learnloop.db'}"
    assert settings.mlflow_uri == f"sqlite:///{root / 'mlflow.db'}"
    assert settings.feast_registry.startswith("sqlite:///") and str(root) in settings.feast_registry


def test_backends_switch_to_servers_by_environment_alone(monkeypatch):
    monkeypatch.setenv("LEARNLOOP_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("LEARNLOOP_MLFLOW_TRACKING_URI", "postgresql://postgres@127.0.0.1:5432/mlflow")
    monkeypatch.setenv("LEARNLOOP_FEAST_ONLINE_STORE", "redis")
    monkeypatch.setenv("LEARNLOOP_FEAST_REGISTRY_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("LEARNLOOP_QDRANT_URL", "http://127.0.0.1:6333")
    monkeypatch.setenv("LEARNLOOP_NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("LEARNLOOP_REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = Settings()
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg://")
    assert settings.mlflow_uri.startswith("postgresql://")
    assert settings.feast_online_store == "redis"
    assert settings.feast_registry.startswith("postgresql")
    assert settings.qdrant_url == "http://127.0.0.1:6333"
    assert settings.nats_url and settings.redis_url


def test_production_refuses_the_development_secret(monkeypatch):
    monkeypatch.setenv("LEARNLOOP_ENV", "production")
    monkeypatch.delenv("LEARNLOOP_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="LEARNLOOP_SECRET_KEY is still the development default"):
        Settings()
    monkeypatch.setenv("LEARNLOOP_SECRET_KEY", "x" * 48)
    assert Settings().secret_key.get_secret_value() != DEV_SECRET


def test_development_accepts_the_default_secret(monkeypatch):
    monkeypatch.setenv("LEARNLOOP_ENV", "development")
    monkeypatch.delenv("LEARNLOOP_SECRET_KEY", raising=False)
    assert Settings().secret_key.get_secret_value() == DEV_SECRET
