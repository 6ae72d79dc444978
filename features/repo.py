"""The declarative Feast repo: entities, parquet batch sources, feature views, versioned FeatureServices.

Field lists, TTLs and service compositions come from ``features/_catalog.py`` so that the snapshot builders,
``feature_names()`` and these declarations cannot drift apart. Source paths are relative to the repo dir
(``settings.feast_dir``, given to Feast as ``repo_path``), so this module reads no settings.
Imported only by ``features.api`` (Feast is a heavy import).
"""

from __future__ import annotations

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

from features._catalog import ENTITIES, SERVICES, VIEWS

_VALUE_TYPES = {"string": ValueType.STRING, "int64": ValueType.INT64}

entities: dict[str, Entity] = {
    spec.name: Entity(name=spec.name, join_keys=[spec.join_key], value_type=_VALUE_TYPES[spec.value_type],
                      description=spec.description)
    for spec in ENTITIES
}

sources: dict[str, FileSource] = {
    spec.name: FileSource(
        name=f"{spec.name}_source",
        path=spec.source_file,
        timestamp_field="event_timestamp",
        # Ties at one event time resolve to the most recently computed row (re-runs, late corrections).
        created_timestamp_column="created_timestamp",
    )
    for spec in VIEWS
}

feature_views: dict[str, FeatureView] = {
    spec.name: FeatureView(
        name=spec.name,
        entities=[entities[spec.entity]],
        ttl=spec.ttl,
        schema=[Field(name=feature, dtype=Float64) for feature in spec.features],
        source=sources[spec.name],
        online=True,
        description=spec.description,
    )
    for spec in VIEWS
}


def _service(name: str) -> FeatureService:
    projections = []
    for view_name, selected in SERVICES[name]:
        view = feature_views[view_name]
        projections.append(view if selected is None else view[list(selected)])
    return FeatureService(name=name, features=projections,
                          description=f"Versioned feature set {name}; training and serving read it by name.")


feature_services: dict[str, FeatureService] = {name: _service(name) for name in SERVICES}
