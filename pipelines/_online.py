"""The online reader pipelines, the bench and tests use: serving's own Feast-free reader
(``serving.api.open_online_reader``), opened for a ``FeatureStore``'s configuration.

``FeatureStore.get_online_features`` spends most of a one-entity read (~1.5 ms) building a generic response
(type checks, protos → Python, per-row dicts). Serving reads the online store's rows directly (SQLite or Redis,
Feast's own keys and layouts). Reading through the same reader here means the parity test and the bench
measure exactly the path serving uses. The FeatureService is resolved once per (store, service): its
projections in the registry must equal ``features/_catalog.py`` (what the reader reads), or it refuses.
"""

from __future__ import annotations

import threading
from pathlib import Path

from features.api import feature_names
from learnloop.errors import Unavailable

_readers: dict[tuple, object] = {}
_lock = threading.Lock()


def reader_for(store, service: str):
    """Serving's reader for ``service`` on ``store``'s online store, cached per (store, service)."""
    # The store's identity and its configuration: an id reused by a later store cannot hand back a reader of
    # another online store.
    key = (id(store), str(store.config.repo_path), store.config.project, service)
    reader = _readers.get(key)
    if reader is not None:
        return reader
    with _lock:
        reader = _readers.get(key)
        if reader is None:
            reader = _readers[key] = _open(store, service)
        return reader


def _open(store, service: str):
    from feast.errors import FeatureServiceNotFoundException

    from serving.api import open_online_reader

    try:
        registered = store.get_feature_service(service)
    except FeatureServiceNotFoundException as exc:
        raise Unavailable(f"FeatureService {service} is not registered in the feature store in "
                          f"{store.config.repo_path}; run `learnloop features build` first") from exc
    in_registry = [f.name for projection in registered.feature_view_projections for f in projection.features]
    if in_registry != feature_names(service):
        raise Unavailable(f"{service} in the registry differs from features/_catalog.py; run `learnloop features "
                          "build` (apply) first")
    config = store.config
    kind = config.online_store.type
    sqlite_path = None
    if kind == "sqlite":
        sqlite_path = Path(config.online_store.path)
        if not sqlite_path.is_absolute():
            sqlite_path = Path(config.repo_path) / sqlite_path
    return open_online_reader(service=service, online_store=kind, project=config.project, sqlite_path=sqlite_path,
                              redis_connection=getattr(config.online_store, "connection_string", None))
