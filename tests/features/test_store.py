"""The Feast repo end to end on the embedded store: configuration, FeatureServices, training sets (one row per
label row, in order, point in time) and online/offline parity for every feature of every FeatureService."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feature_fixtures import assert_online_offline_parity

from features.api import (
    feature_names,
    fill_missing,
    repo_config,
    service_join_keys,
    service_names,
    source_path,
)
from learnloop.settings import FeastOnlineStore, Settings
from pipelines.api import build_risk_training_set, get_online_features, historical_features, risk_label_frame


def test_embedded_config_keeps_everything_under_the_feast_dir(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    config = repo_config(settings)
    assert config.online_store.type == "sqlite"
    assert config.online_store.path == str(settings.feast_dir / "online_store.db")
    assert config.registry.registry_type == "sql"
    assert config.registry.path == f"sqlite:///{settings.feast_dir / 'registry.db'}"
    assert config.offline_store.type == "duckdb"
    assert str(config.repo_path) == str(settings.feast_dir)


def test_configuration_alone_switches_to_redis_and_postgres(tmp_path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    settings = Settings(data_dir=tmp_path / "var", feast_online_store=FeastOnlineStore.redis,
                        feast_registry_url=url, feast_redis_connection="127.0.0.1:6380")
    config = repo_config(settings, project="other_project")
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "127.0.0.1:6380"
    assert config.registry.path == url
    assert config.project == "other_project"


def test_feature_names_follow_the_registered_feature_service(built) -> None:
    for service in service_names():
        registered = built.store.get_feature_service(service)
        in_registry = [f.name for projection in registered.feature_view_projections for f in projection.features]
        assert feature_names(service) == in_registry
        assert len(set(in_registry)) == len(in_registry)  # names are unique model inputs
    assert set(service_join_keys("student_risk_v1")) == {"student_course", "course", "id_student"}
    assert set(service_join_keys("recommendation_v1")) == {"id_site", "student_course"}


def test_fill_policy_keeps_unknown_as_nan_and_absent_flags_as_zero() -> None:
    frame = pd.DataFrame({"key": ["a"], "has_click_data": [None], "clicks_total_7d": [None], "n_missed": [2]})
    filled = fill_missing(frame, "student_risk_v1")
    assert list(filled.columns) == ["key", *feature_names("student_risk_v1")]
    assert filled.loc[0, "has_click_data"] == 0.0
    assert np.isnan(filled.loc[0, "clicks_total_7d"]) and np.isnan(filled.loc[0, "score_mean"])
    assert filled.loc[0, "n_missed"] == 2.0
    assert (filled[feature_names("student_risk_v1")].dtypes == "float64").all()


def test_training_set_has_one_row_per_label_row_in_order(built) -> None:
    feast_dir = built.settings.feast_dir
    labels = risk_label_frame(feast_dir=feast_dir)
    training = build_risk_training_set(store=built.store)
    assert len(training) == len(labels) > 300
    assert (training["student_course"].to_numpy() == labels["student_course"].to_numpy()).all()
    assert (training["week"].to_numpy() == labels["week"].to_numpy()).all()
    expected_head = ["student_course", "id_student", "code_module", "code_presentation", "week", "cutoff_day",
                     "active", "has_clicks", "label", "gender", "age_band", "disability", "imd_band"]
    assert list(training.columns) == expected_head + feature_names("student_risk_v1")
    assert list(training["week"].unique()) == ["5", "10", "15", "end"]
    # Each row's course_day is its own cutoff: features came from the snapshot at the label time.
    assert (training["course_day"].to_numpy() == training["cutoff_day"].to_numpy()).all()
    assert (training.loc[~training["active"], "is_unregistered"] == 1).all()
    assert training.loc[~training["has_clicks"], "clicks_total_cum"].isna().all()


def test_historical_rows_survive_feast_dropping_and_reordering(built) -> None:
    labels = risk_label_frame(weeks=(5,), feast_dir=built.settings.feast_dir).head(6)
    # Shuffled, duplicated, an unknown registration and one stamped before any snapshot exists.
    frame = pd.concat([labels.iloc[[3, 1, 1]], labels.iloc[[0]].assign(student_course="999999:AAA-2013J",
                                                                        id_student=999999)])
    early = labels.iloc[[2]].copy()
    early["event_timestamp"] = pd.Timestamp("2000-01-01", tz="UTC")
    frame = pd.concat([frame, early], ignore_index=True)
    out = historical_features(store=built.store, service="student_risk_v1", entity_frame=frame)
    assert list(out["student_course"]) == list(frame["student_course"])
    pd.testing.assert_series_equal(out.iloc[1][feature_names("student_risk_v1")],
                                   out.iloc[2][feature_names("student_risk_v1")], check_names=False)
    assert np.isnan(out.loc[3, "n_missed"]) and out.loc[3, "has_click_data"] == 0.0
    assert np.isnan(out.loc[4, "n_missed"])
    assert not np.isnan(out.loc[0, "n_missed"])


def test_a_value_changed_after_the_label_time_never_leaks(built) -> None:
    labels = risk_label_frame(weeks=(5,), feast_dir=built.settings.feast_dir)
    row = labels[labels["has_clicks"]].iloc[[0]].reset_index(drop=True)
    path = source_path("student_course_activity", built.settings)
    original = pd.read_parquet(path)
    try:
        planted = original[original["student_course"] == row.loc[0, "student_course"]].iloc[[0]].copy()
        planted["event_timestamp"] = row.loc[0, "event_timestamp"] + pd.Timedelta(hours=1)
        planted["created_timestamp"] = pd.Timestamp.now(tz="UTC")
        planted["clicks_total_cum"] = 1e9
        pd.concat([original, planted], ignore_index=True).to_parquet(path, index=False)
        at_label = historical_features(store=built.store, service="student_risk_v1", entity_frame=row)
        later = historical_features(store=built.store, service="student_risk_v1",
                                    entity_frame=row.assign(event_timestamp=row["event_timestamp"]
                                                            + pd.Timedelta(hours=2)))
    finally:
        original.to_parquet(path, index=False)
    assert at_label.loc[0, "clicks_total_cum"] != 1e9
    assert later.loc[0, "clicks_total_cum"] == 1e9  # the planted row is real and visible once it happened


def test_online_features_equal_offline_features_at_materialization_time(built) -> None:
    assert assert_online_offline_parity(built) == sum(len(feature_names(s)) for s in service_names())


def test_online_read_needs_only_the_registration_key(built) -> None:
    regs = pd.read_parquet(built.settings.feast_dir / "data" / "registrations.parquet")
    key = regs["student_course"].iloc[-1]
    out = get_online_features(service="student_risk_v1", entity_rows=[{"student_course": key}], store=built.store)
    assert out.loc[0, "student_course"] == key and out.loc[0, "id_student"] == int(key.split(":")[0])
    with pytest.raises(Exception, match="11391:AAA-2013J"):
        get_online_features(service="student_risk_v1", entity_rows=[{"student_course": "nonsense"}],
                            store=built.store)


def test_each_store_reads_its_own_parquet_sources(built) -> None:
    # apply() resolves source paths per store; a store applied earlier in the process must not leak its paths.
    for view in built.store.list_feature_views():
        assert view.batch_source.path.startswith(str(built.settings.feast_dir)), view.batch_source.path


def test_serving_reader_is_the_online_path_and_batches_equal_single_reads(built) -> None:
    from pipelines._online import reader_for

    reader = reader_for(built.store, "student_risk_v1")
    assert type(reader).__name__ == "OnlineFeatureReader"  # serving's SQLite reader, not Feast's python path
    regs = pd.read_parquet(built.settings.feast_dir / "data" / "registrations.parquet")
    rows = [{"student_course": key, "id_student": int(key.split(":")[0]), "course": key.split(":")[1]}
            for key in regs["student_course"].iloc[:20]] + [{"student_course": "9:ZZZ-2099J", "id_student": 9,
                                                               "course": "ZZZ-2099J"}]
    batch = reader.read_rows(rows)
    single = np.vstack([reader.read(student_id=r["id_student"], course_id=r["course"]).values for r in rows])
    np.testing.assert_array_equal(batch, single)
    assert np.isnan(batch[-1]).all() and (~np.isnan(batch[:-1])).sum() > 20 * 10


def test_features_bench_reports_the_serving_path(built) -> None:
    from pipelines._bench import bench_online

    report = bench_online(service="student_risk_v1", repeats=40, store=built.store, reference_repeats=5)
    assert report["online_store"] == "sqlite" and report["path"].startswith("serving.api.open_online_reader")
    for key in ("online_ms", "online_cpu_ms", "feast_ms"):
        assert set(report[key]) == {"1", "100"}
        for size in ("1", "100"):
            assert 0 < report[key][size]["p50"] <= report[key][size]["p99"]
    # The direct read is the cheap one: less CPU than Feast's generic get_online_features for one entity.
    assert report["online_cpu_ms"]["1"]["p50"] < report["feast_cpu_ms"]["1"]["p50"]


def test_materializing_a_store_that_was_never_built_fails_and_says_what_to_run(tmp_path, built) -> None:
    """It reported success: nothing registered (never applied), no offline sources, or sources without a row."""
    from features.api import apply, get_store, view_names
    from learnloop.errors import Unavailable
    from pipelines.api import materialize

    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_dirs()
    store = get_store(settings)
    with pytest.raises(Unavailable, match=r"no feature views registered .*run `learnloop features build` first"):
        materialize(store=store)
    apply(store)
    with pytest.raises(Unavailable, match=r"offline sources of .* are missing .*run `learnloop features build`"):
        materialize(store=store)
    for view in view_names():  # every source present, but empty
        path = source_path(view, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.read_parquet(source_path(view, built.settings)).iloc[0:0].to_parquet(path, index=False)
    with pytest.raises(Unavailable, match=r"hold no rows to materialize; run `learnloop features build`"):
        materialize(store=store)
    with pytest.raises(Unavailable, match="not registered"):
        materialize(store=store, views=["no_such_view"])


def test_materializing_a_built_store_again_is_an_up_to_date_success(built) -> None:
    from pipelines.api import materialize

    report = materialize(store=built.store)
    assert pd.Timestamp(report["end"]) == built.end
    assert all(report[view] == {"skipped": True} for view in report if view != "end")


def test_benching_an_online_store_that_was_never_materialized_fails_and_says_what_to_run(tmp_path, built) -> None:
    """`features bench` on a store built but never materialized printed p50/p99 timings of reads that found nothing."""
    import shutil

    from features.api import apply, get_store, view_names
    from learnloop.errors import Unavailable
    from pipelines._bench import bench_online
    from pipelines._offline import registrations_path

    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_dirs()
    store = get_store(settings)
    apply(store)
    for view in view_names():
        source_path(view, settings).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source_path(view, built.settings), source_path(view, settings))
    shutil.copy(registrations_path(built.settings.feast_dir), registrations_path(settings.feast_dir))
    with pytest.raises(Unavailable, match=r"holds no features of student_risk_v1 .*run `learnloop features materialize`"):
        bench_online(service="student_risk_v1", repeats=5, store=store, reference_repeats=2)
