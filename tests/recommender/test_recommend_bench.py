"""``learnloop bench recommend``'s report on a small course: the stable keys other tools read, and the wire section
(packed columns vs JSON lists) that decodes what was sent."""

from __future__ import annotations


def test_bench_recommend_reports_the_warm_path_and_the_wire():
    from recommender._recommend.bench import bench_recommend

    report = bench_recommend(n_learners=80, n_items=25, day=40, requests=12, uncached_requests=3)
    for key in ("p50_ms", "p99_ms", "n_items", "n_learners", "n_interactions", "cold_ms", "after_new_event_ms",
                "uncached", "before_whole_course_features", "cache", "live", "wire"):
        assert key in report, key
    live = report["live"]
    # every live request carried new opens: none was an exact hit, none rebuilt the course in line
    assert live["requests"] == 12 and live["stale"] == 12 and live["misses"] == 1 and live["p99_ms"] > 0
    assert report["p50_ms"] > 0 and report["n_items"] == 25
    for form in ("packed", "lists"):
        wire = report["wire"][form]
        assert wire["bytes"] > 0 and wire["encode"]["p50_ms"] > 0 and wire["parse"]["p50_ms"] > 0
