"""A lean online reader for one FeatureService.

``FeatureStore.get_online_features`` spends most of a one-entity read building a generic response (type
checks, protos → Python, per-row dicts). This reader keeps everything that defines *what* is read — the
FeatureService and its projections from the registry, each view's entity, the configured online store's own
``online_read`` (SQLite or Redis) — and only writes the values straight into a float matrix. Its output is
checked against offline retrieval by the same parity test as the generic path.
"""

from __future__ import annotations

import numpy as np

from features.api import feature_names, service_join_keys


class ServiceReader:
    """Reads ``service`` for batches of entity rows (all join keys present) into a float matrix."""

    def __init__(self, store, service: str) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._entity_key, self._value = EntityKey, Value
        self.store, self.service = store, service
        self.names = feature_names(service)
        self.join_keys = service_join_keys(service)
        position = {name: i for i, name in enumerate(self.names)}
        self._online_store = store._get_provider().online_store
        self._plan = []
        feature_service = store.get_feature_service(service)
        for projection in feature_service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            join_key = view.entity_columns[0].name
            wanted = [feature.name for feature in projection.features]
            self._plan.append((view, join_key, wanted, [position[name] for name in wanted]))
        registered = [name for _, _, wanted, _ in self._plan for name in wanted]
        if registered != self.names:
            raise RuntimeError(f"{service} in the registry differs from features/_catalog.py; run apply()")

    def _key(self, join_key: str, value) -> object:
        proto_value = (self._value(int64_val=int(value)) if isinstance(value, int | np.integer)
                       else self._value(string_val=str(value)))
        return self._entity_key(join_keys=[join_key], entity_values=[proto_value])

    def read(self, rows: list[dict]) -> np.ndarray:
        """Feature matrix (len(rows) × len(names)); NaN where the online store has no value."""
        matrix = np.full((len(rows), len(self.names)), np.nan)
        config = self.store.config
        for view, join_key, wanted, columns in self._plan:
            keys = [self._key(join_key, row[join_key]) for row in rows]
            # A copy: the Redis store appends its timestamp key to the list it is given.
            results = self._online_store.online_read(config, view, keys, list(wanted))
            for i, (_, values) in enumerate(results):
                if not values:
                    continue
                for name, column in zip(wanted, columns, strict=True):
                    value = values.get(name)
                    if value is not None and value.WhichOneof("val") == "double_val":
                        matrix[i, column] = value.double_val
        return matrix
