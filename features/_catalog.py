"""What the feature repo holds, as plain data (no Feast import): views, their fields in order, TTLs and the
versioned FeatureServices. ``features/repo.py`` declares the Feast objects from these lists, the snapshot
builders write exactly these columns, and ``features.api.feature_names`` answers from here without importing
Feast (so serving can know a model's inputs cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

CLICK_WINDOWS = (7, 14, 28)
CLICK_TYPES = ("forumng", "homepage", "oucontent", "subpage", "quiz", "resource", "url")


@dataclass(frozen=True)
class EntitySpec:
    name: str
    join_key: str
    value_type: str  # "string" | "int64"
    description: str


@dataclass(frozen=True)
class ViewSpec:
    name: str
    entity: str
    ttl: timedelta
    features: tuple[str, ...]
    description: str

    @property
    def source_file(self) -> str:
        """Parquet file of this view's batch source, relative to the Feast repo dir (settings.feast_dir)."""
        return f"data/{self.name}.parquet"


ENTITIES = (
    EntitySpec("student", "id_student", "int64", "A learner (OULAD id_student / platform user)."),
    EntitySpec("course", "course", "string", "A module-presentation, e.g. AAA-2013J."),
    EntitySpec("student_course", "student_course", "string", "A registration, e.g. 11391:AAA-2013J."),
    EntitySpec("content_item", "id_site", "int64", "A VLE content item (OULAD id_site)."),
)

_click_counts = tuple(
    f"clicks_{kind}_{window}" for kind in ("total", *CLICK_TYPES, "other")
    for window in (*(f"{w}d" for w in CLICK_WINDOWS), "cum")
)

# TTLs: a registration's weekly snapshot stays valid for a year, so a read after the presentation ended
# still sees its final state; a student's history spans several presentations (three years).
VIEWS = (
    ViewSpec("student_course_profile", "student_course", timedelta(days=400), (
        "registration_day", "days_registered", "is_unregistered", "num_of_prev_attempts", "studied_credits",
        "education_level", "imd_decile", "age_level", "has_disability",
    ), "Registration timing and status as of t, prior attempts, credits, coarse background."),
    ViewSpec("student_course_assessments", "student_course", timedelta(days=400), (
        "n_submitted", "n_due", "n_missed", "n_late", "n_banked", "n_scores_returned", "n_failed_scores",
        "score_mean", "score_weighted_mean", "weighted_points",
    ), "Non-exam assessments submitted/missed/late so far and marks returned so far."),
    ViewSpec("student_course_activity", "student_course", timedelta(days=400), (
        "has_click_data", *_click_counts, "days_since_last_activity", "active_days_7d", "active_days_28d",
        "current_streak", "longest_streak", "clicks_28d_cohort_z", "clicks_cum_cohort_z",
    ), "VLE clicks per activity type over 7/14/28 days and cumulative; null where no click data exists."),
    ViewSpec("course_cohort", "course", timedelta(days=400), (
        "course_length", "course_day", "course_progress", "n_registered", "unregistered_share",
        "cohort_clicks_28d_mean", "course_has_click_data", "days_to_next_deadline",
    ), "The module-presentation as of t: cohort size, withdrawals so far, deadlines ahead."),
    ViewSpec("student_history", "student", timedelta(days=1100), (
        "prior_presentations", "prior_passes", "prior_fail_or_withdrawn",
    ), "Outcomes of the student's other presentations, from the time each result is known (its last day + "
       "RESULT_LAG_DAYS)."),
    ViewSpec("content_item_popularity", "content_item", timedelta(days=400), (
        "item_clicks_7d", "item_clicks_28d", "item_clicks_cum", "item_student_days_7d",
        "item_student_days_28d", "item_students_cum",
    ), "How much a content item is used by its cohort as of t."),
    ViewSpec("student_course_submissions", "student_course", timedelta(days=400), (
        "due_weight", "submitted_weight", "n_on_time", "n_ahead", "submitted_share", "days_early_mean",
        "days_since_last_submission", "cma_score_mean", "tma_score_mean", "score_vs_cohort", "submitted_vs_cohort",
    ), "Submission behaviour as of t (known when it happens): weight due vs submitted, on time, ahead of "
       "deadlines, days early; marks by type after their return lag; position in the still-registered cohort."),
    ViewSpec("module_history", "course", timedelta(days=400), (
        "module_prior_presentations", "module_prior_fail_rate", "module_prior_active_fail_rate",
    ), "Withdrawn/Fail rates of the same module's presentations that had ended by t (overall, and among "
       "students still registered on the same course day)."),
)
VIEWS_BY_NAME = {view.name: view for view in VIEWS}
ENTITIES_BY_NAME = {entity.name: entity for entity in ENTITIES}

# Versioned FeatureServices: (view, features or None for all) in model-input order. Never edit a published
# version's list; add `_v2` instead so a registered model keeps reading exactly what it was trained on.
SERVICES: dict[str, tuple[tuple[str, tuple[str, ...] | None], ...]] = {
    "student_risk_v1": (
        ("student_course_profile", None),
        ("student_course_assessments", None),
        ("student_course_activity", None),
        ("course_cohort", None),
        ("student_history", None),
    ),
    # v2 = v1 + submission behaviour + module base rates (issue 6: the early signal is the fact and timing of
    # submission, not the mark, which comes back later).
    "student_risk_v2": (
        ("student_course_profile", None),
        ("student_course_assessments", None),
        ("student_course_activity", None),
        ("course_cohort", None),
        ("student_history", None),
        ("student_course_submissions", None),
        ("module_history", None),
    ),
    "recommendation_v1": (
        ("content_item_popularity", None),
        ("student_course_activity", ("has_click_data", "clicks_total_7d", "clicks_total_28d", "clicks_total_cum",
                                     "days_since_last_activity", "active_days_28d")),
        ("student_course_assessments", ("score_mean", "n_missed")),
    ),
}

# Fill policy shared by training and serving: availability flags read "absent" as 0 (no evidence of data);
# every other feature stays NaN (the model's own imputer decides), never a made-up zero.
FLAG_FEATURES = frozenset({"has_click_data", "course_has_click_data"})


def service_views(service: str) -> list[tuple[str, tuple[str, ...]]]:
    """(view name, features) pairs of a FeatureService, in order."""
    return [(view, features if features is not None else VIEWS_BY_NAME[view].features)
            for view, features in SERVICES[service]]


def service_entities(service: str) -> list[str]:
    """Join keys a FeatureService needs, in first-use order."""
    keys: list[str] = []
    for view, _ in SERVICES[service]:
        key = ENTITIES_BY_NAME[VIEWS_BY_NAME[view].entity].join_key
        if key not in keys:
            keys.append(key)
    return keys
