"""Plain data of the feature repo that readers need without importing Feast (or ``features.api``, which
builds stores): the layout of a FeatureService — its features in model-input order, the views they come from
and the join key of each — and which features are availability flags (the fill policy's "absent = 0").

Serving's online reader (``serving/_online.py``) reads the online store with this; ``features.api`` answers
the same questions (``feature_names``, ``service_join_keys``, ``fill_matrix``) from the same catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

from features._catalog import (
    ENTITIES_BY_NAME,
    FLAG_FEATURES,
    SERVICES,
    VIEWS_BY_NAME,
    service_entities,
    service_views,
)
from learnloop.errors import NotFound


@dataclass(frozen=True)
class ServiceView:
    """One feature view as read by a FeatureService: its join key and the features taken from it."""

    view: str
    join_key: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class ServiceLayout:
    """What reading FeatureService ``service`` means: views in order, join keys, features, flag features."""

    service: str
    views: tuple[ServiceView, ...]
    join_keys: tuple[str, ...]
    feature_names: tuple[str, ...]
    flag_features: frozenset[str]  # read "absent" as 0; every other feature keeps NaN


def service_layout(service: str) -> ServiceLayout:
    """The layout of FeatureService ``service`` (raises NotFound for an unknown name)."""
    if service not in SERVICES:
        raise NotFound(f"FeatureService {service!r} does not exist; known: {', '.join(SERVICES)}")
    views = tuple(ServiceView(view=view, join_key=ENTITIES_BY_NAME[VIEWS_BY_NAME[view].entity].join_key,
                              features=tuple(features)) for view, features in service_views(service))
    names = tuple(name for view in views for name in view.features)
    return ServiceLayout(service=service, views=views, join_keys=tuple(service_entities(service)),
                         feature_names=names, flag_features=frozenset(FLAG_FEATURES) & set(names))
