"""Drift monitoring of the served models: Evidently drift checks, the retraining trigger, operator metrics and
page. Other packages use :mod:`pipelines.monitoring.api` and :mod:`pipelines.monitoring.data` only."""
