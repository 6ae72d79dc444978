"""Small synthetic risk windows: click features, assessment features, a label that depends on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

CLICK_FEATURES = ["clicks_total_7d", "clicks_total_28d", "clicks_total_cum", "active_days_28d"]
OTHER_FEATURES = ["n_missed", "score_mean", "studied_credits", "days_to_next_deadline"]
FEATURES = [*CLICK_FEATURES, *OTHER_FEATURES]


def risk_window(n: int, *, seed: int, click_shift: float = 1.0) -> pd.DataFrame:
    """``click_shift`` scales the click features (0.3 = learners click a third as much: injected drift)."""
    rng = np.random.default_rng(seed)
    engagement = rng.gamma(2.0, 1.0, n)
    frame = pd.DataFrame({
        "clicks_total_7d": rng.poisson(20 * engagement) * click_shift,
        "clicks_total_28d": rng.poisson(80 * engagement) * click_shift,
        "clicks_total_cum": rng.poisson(300 * engagement) * click_shift,
        "active_days_28d": np.minimum(rng.poisson(8 * engagement), 28) * click_shift,
        "n_missed": rng.binomial(3, 0.2, n).astype(float),
        "score_mean": np.clip(rng.normal(65, 12, n), 0, 100),
        "studied_credits": rng.choice([30.0, 60.0, 90.0, 120.0], n),
        "days_to_next_deadline": rng.integers(0, 30, n).astype(float),
    })
    # Risk falls with engagement and marks, rises with missed work (as in OULAD).
    logit = 1.0 - 0.9 * engagement + 0.8 * frame["n_missed"] - 0.03 * (frame["score_mean"] - 65)
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture(scope="session")
def reference_window() -> pd.DataFrame:
    return risk_window(600, seed=1)


@pytest.fixture(scope="session")
def same_distribution_window() -> pd.DataFrame:
    return risk_window(600, seed=2)


@pytest.fixture(scope="session")
def drifted_window() -> pd.DataFrame:
    return risk_window(600, seed=3, click_shift=0.3)


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory):
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def registry_settings(settings, _migrated_mlflow_db):
    """``settings`` whose sqlite MLflow store already has its tables (its ~15 s schema migration paid once)."""
    import shutil

    shutil.copyfile(_migrated_mlflow_db, settings.data_path / "mlflow.db")
    return settings
