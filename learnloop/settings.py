"""One typed settings object for the whole platform.

Every path lives under one data dir (``LEARNLOOP_DATA_DIR``, default ``./var``). Each backend has an
embedded default and switches to its server form by configuration alone:

==================  =============================  ==========================================
concern             embedded default               server form (set this)
==================  =============================  ==========================================
platform database   SQLite file in the data dir    ``LEARNLOOP_DATABASE_URL=postgresql+psycopg://…``
events              outbox + in-process relay      ``LEARNLOOP_NATS_URL=nats://127.0.0.1:4222``
rate limits         in memory                      ``LEARNLOOP_REDIS_URL=redis://127.0.0.1:6379/0``
feature store       SQLite online, sqlite registry ``LEARNLOOP_FEAST_ONLINE_STORE=redis`` / ``LEARNLOOP_FEAST_REGISTRY_URL``
tracking/registry   MLflow on sqlite               ``LEARNLOOP_MLFLOW_TRACKING_URI=postgresql://…``
vector search       Qdrant local path              ``LEARNLOOP_QDRANT_URL=http://…:6333``
==================  =============================  ==========================================
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "learnloop-development-secret-change-me"  # noqa: S105 - refused in production below


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class FeastOnlineStore(StrEnum):
    sqlite = "sqlite"
    redis = "redis"


def _default_datasets_dir() -> Path | None:
    # Beside the checkout, the project's shared folder holds the real data sets.
    for candidate in (Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


class Settings(BaseSettings):
    """Configuration read from ``LEARNLOOP_*`` environment variables (and an optional ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="LEARNLOOP_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    data_dir: Path = Field(default=Path("var"), description="Root of every file the platform writes.")
    datasets_dir: Path | None = Field(
        default_factory=_default_datasets_dir,
        description="Folder with the real data sets (oulad/, asap_aes/, scifact/, course_catalog/).",
    )

    # Platform API
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = 30
    refresh_token_days: int = 14
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    rate_limit_per_minute: int = 600
    redis_url: str | None = None
    nats_url: str | None = None
    grading_lease_seconds: float = Field(
        default=60.0, gt=0,
        description="How long a grading worker's claim on an essay lasts unrenewed; the worker renews it every "
                    "third of that while it grades, so a killed worker's essays are claimable again within it.",
    )
    grading_max_seconds: float = Field(
        default=600.0, gt=0,
        description="How long a grading worker keeps renewing the claim on the one essay it is grading; past it "
                    "the grader is taken for hung: the claim lapses a lease later, another worker grades the essay "
                    "and the hung attempt's late result is dropped.",
    )
    nats_duplicate_window_s: float = Field(
        default=120.0, gt=0, le=7 * 24 * 3600,
        description="JetStream drops a copy of an event published again within this window (of the relay's stream "
                    "LMS_EVENTS); the consumers skip later copies by event id themselves.")

    # ML loop
    mlflow_tracking_uri: str | None = None
    feast_online_store: FeastOnlineStore = FeastOnlineStore.sqlite
    feast_redis_connection: str = "127.0.0.1:6379"
    feast_registry_url: str | None = Field(default=None, description="SQLAlchemy URL of the Feast SQL registry.")
    qdrant_url: str | None = None
    serving_host: str = "127.0.0.1"
    serving_port: int = 3000
    serving_timeout_s: float = 2.0
    serving_essay_batching: bool = Field(default=True, description="Grade concurrent essays together (BentoML's adaptive dispatcher); false grades each alone.")
    serving_poll_seconds: float = Field(default=5.0, description="How often the model service checks the champion alias (0 = only on reload).")

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        if self.env is Environment.production and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError(
                "LEARNLOOP_SECRET_KEY is still the development default; set a long random value "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) before running in production"
            )
        return self

    # Derived locations: all under data_dir so one folder holds a whole installation.
    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'learnloop.db'}"

    @property
    def feast_dir(self) -> Path:
        return self.data_path / "feast"

    @property
    def feast_registry(self) -> str:
        return self.feast_registry_url or f"sqlite:///{self.feast_dir / 'registry.db'}"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_path / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.data_path / "mlartifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.data_path / "bentoml"

    @property
    def qdrant_path(self) -> Path:
        return self.data_path / "qdrant"

    @property
    def reports_dir(self) -> Path:
        return self.data_path / "reports"

    @property
    def cache_dir(self) -> Path:
        return self.data_path / "cache"

    @property
    def serving_url(self) -> str:
        return f"http://{self.serving_host}:{self.serving_port}"

    def ensure_dirs(self) -> None:
        for path in (self.data_path, self.feast_dir, self.mlflow_artifacts_dir, self.bentoml_home,
                     self.reports_dir, self.cache_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call ``get_settings.cache_clear()`` after changing env)."""
    return Settings()
