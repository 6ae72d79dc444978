"""Public surface of the feature store: the one place a Feast ``FeatureStore`` is built from settings.

The environment YAML (``features/environments/<local|scale>/feature_store.yaml``) is chosen by
``settings.feast_online_store`` (sqlite → local, redis → scale); its ``${...}`` placeholders are filled from
settings, so configuration alone switches the embedded store (SQLite online, SQL registry on SQLite, parquet
offline, all under ``settings.feast_dir``) to Redis online + a PostgreSQL registry.

``feature_names``/``service_join_keys``/``fill_missing`` import no Feast and are cheap for serving.
"""

from __future__ import annotations

import copy
import os
import string
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features._catalog import (
    ENTITIES_BY_NAME,
    FLAG_FEATURES,
    SERVICES,
    VIEWS,
    VIEWS_BY_NAME,
    service_entities,
    service_views,
)
from learnloop.errors import InvalidInput, NotFound
from learnloop.settings import FeastOnlineStore, Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

__all__ = [
    "DEFAULT_PROJECT",
    "apply",
    "feature_names",
    "fill_matrix",
    "fill_missing",
    "get_store",
    "repo_config",
    "service_join_keys",
    "service_names",
    "source_path",
    "view_features",
    "view_join_key",
    "view_names",
]

DEFAULT_PROJECT = "learnloop"
_ENV_DIR = Path(__file__).parent / "environments"
_stores: dict[tuple, FeatureStore] = {}
_lock = threading.Lock()


# --------------------------------------------------------------------------- catalog (no Feast import)
def service_names() -> list[str]:
    """Names of the versioned FeatureServices (e.g. ``student_risk_v1``, ``recommendation_v1``)."""
    return list(SERVICES)


def feature_names(service: str) -> list[str]:
    """The features of FeatureService ``service`` in model-input order (names as Feast returns them)."""
    _check_service(service)
    return [feature for _, features in service_views(service) for feature in features]


def service_join_keys(service: str) -> list[str]:
    """Entity join keys a request to ``service`` must carry (e.g. ``student_course``, ``id_student``)."""
    _check_service(service)
    return service_entities(service)


def view_names() -> list[str]:
    """Names of every feature view in the repo."""
    return [view.name for view in VIEWS]


def view_features(view: str) -> list[str]:
    """Feature columns of a view, in order (the columns its parquet source must carry)."""
    return list(VIEWS_BY_NAME[view].features)


def view_join_key(view: str) -> str:
    """The join key column of a view's entity."""
    return ENTITIES_BY_NAME[VIEWS_BY_NAME[view].entity].join_key


def fill_missing(frame: pd.DataFrame, service: str) -> pd.DataFrame:
    """The one missing-value policy, shared by training sets and online reads of ``service``.

    Every feature becomes float64. Availability flags (``has_click_data``, ``course_has_click_data``) read a
    missing value as 0 (no evidence the data exists); every other feature keeps NaN for "unknown" (no
    snapshot inside the TTL, no click data, no mark returned yet) — never a made-up zero. The model's own
    fitted imputer decides what NaN means. Columns are reordered to ``feature_names(service)``, after any
    non-feature columns. Missing feature columns are added (all NaN/0).
    """
    names = feature_names(service)
    wanted = set(names)
    present = [name for name in names if name in frame.columns]
    matrix = np.full((len(frame), len(names)), np.nan)
    if present:
        positions = [names.index(name) for name in present]
        matrix[:, positions] = frame[present].to_numpy(dtype="float64", na_value=np.nan)
    matrix = fill_matrix(matrix, service)
    others = frame[[c for c in frame.columns if c not in wanted]]
    filled = pd.DataFrame(matrix, columns=names, index=frame.index)
    return pd.concat([others, filled], axis=1) if len(others.columns) else filled


def fill_matrix(matrix: np.ndarray, service: str) -> np.ndarray:
    """``fill_missing`` on a float matrix whose columns are ``feature_names(service)`` (in place; returned).
    NaN (or None converted to NaN) marks a missing value."""
    flags = _flag_positions(service)
    if flags:
        block = matrix[:, flags]
        block[np.isnan(block)] = 0.0
        matrix[:, flags] = block
    return matrix


def _flag_positions(service: str) -> list[int]:
    return [i for i, name in enumerate(feature_names(service)) if name in FLAG_FEATURES]


def source_path(view: str, settings: Settings | None = None) -> Path:
    """Parquet file backing ``view``'s batch source under ``settings.feast_dir``."""
    if view not in VIEWS_BY_NAME:
        raise NotFound(f"feature view {view!r} does not exist; known: {', '.join(VIEWS_BY_NAME)}")
    return (settings or get_settings()).feast_dir / VIEWS_BY_NAME[view].source_file


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise NotFound(f"FeatureService {service!r} does not exist; known: {', '.join(SERVICES)}")


# --------------------------------------------------------------------------- Feast store
def _placeholders(settings: Settings, project: str) -> dict[str, str]:
    return {
        "FEAST_PROJECT": project,
        "FEAST_DIR": str(settings.feast_dir),
        "FEAST_REGISTRY_URL": settings.feast_registry,
        "FEAST_REDIS_CONNECTION": settings.feast_redis_connection,
    }


def _environment_yaml(settings: Settings) -> Path:
    folder = "scale" if settings.feast_online_store is FeastOnlineStore.redis else "local"
    return _ENV_DIR / folder / "feature_store.yaml"


def repo_config(settings: Settings | None = None, *, project: str = DEFAULT_PROJECT) -> RepoConfig:
    """The Feast ``RepoConfig`` for these settings (the environment YAML with ``${...}`` filled in)."""
    import yaml
    from feast import RepoConfig

    settings = settings or get_settings()
    if not project.replace("_", "").isalnum() or project.startswith("_"):
        raise InvalidInput(f"Feast project {project!r} must be alphanumeric/underscore, not starting with _")
    template = string.Template(_environment_yaml(settings).read_text())
    # Settings win; the process environment fills anything else a deployment adds to its YAML.
    raw = yaml.safe_load(template.substitute({**os.environ, **_placeholders(settings, project)}))
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    (settings.feast_dir / "data").mkdir(parents=True, exist_ok=True)
    config = RepoConfig(**raw)
    config.repo_path = settings.feast_dir
    return config


def get_store(settings: Settings | None = None, *, project: str = DEFAULT_PROJECT) -> FeatureStore:
    """A ``FeatureStore`` for these settings, cached per configuration (one per process and config)."""
    settings = settings or get_settings()
    key = (str(_environment_yaml(settings)), tuple(sorted(_placeholders(settings, project).items())))
    with _lock:
        store = _stores.get(key)
        if store is None:
            from feast import FeatureStore

            store = FeatureStore(config=repo_config(settings, project=project))
            _stores[key] = store
        return store


def apply(store: FeatureStore | None = None) -> dict[str, Any]:
    """Register every entity, source, view and FeatureService of ``features/repo.py`` in the registry
    (source paths resolved under the store's repo dir, ``settings.feast_dir``).

    Idempotent. Returns counts of what was applied.
    """
    from features import repo

    store = store or get_store()
    # A private copy per apply: resolving paths on the module-level objects would leak one store's paths into
    # the next store applied in the same process. Deep-copied together, views keep pointing at their sources.
    entities, sources, views, services = copy.deepcopy(
        (repo.entities, repo.sources, repo.feature_views, repo.feature_services))
    for source in sources.values():
        # Relative source paths mean "under the repo dir"; the registry stores them resolved because not
        # every offline store (duckdb) resolves them against repo_path.
        if not Path(source.path).is_absolute():
            source.file_options.uri = str(Path(store.config.repo_path) / source.path)
    store.apply([*entities.values(), *sources.values(), *views.values(), *services.values()])
    return {"entities": len(repo.entities), "feature_views": len(repo.feature_views),
            "feature_services": len(repo.feature_services)}
