"""The columnar ``/recommend`` opens (``serving.api.encode_opens`` → JSON → ``serving.data.Opens``) decode to
exactly the frame the platform passed, and malformed columns are refused with a reason (a 400 over HTTP)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError


def _wire(interactions, *, categorical: bool = False) -> pd.DataFrame:
    """The frame the service ranks from (ids categorical), or with ``categorical=False`` its values as plain
    object ids, to compare with what the platform sent."""
    from serving.api import encode_opens
    from serving.data import Opens

    frame = Opens.model_validate_json(json.dumps(encode_opens(interactions))).frame()
    return frame if categorical else frame.astype({"user_id": object, "item_id": object})


def _course(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 2_000  # re-opens included: 60 learners × 25 items
    return pd.DataFrame({"user_id": [f"user-{int(u)}" for u in rng.integers(0, 60, n)],
                         "item_id": [f"item {int(i)}" for i in rng.integers(0, 25, n)],
                         "day": rng.integers(0, 90, n)})


@pytest.mark.parametrize("seed", [0, 1])
def test_columnar_opens_decode_to_the_frame_the_platform_sent(seed):
    opens = _course(seed)
    decoded = _wire(opens)
    pd.testing.assert_frame_equal(decoded, opens, check_exact=True)  # same rows, order and dtypes
    assert _wire(opens.to_dict("records")).equals(opens)  # list-of-dicts input too
    # the platform's shape: ids as strings in first-seen order, days as ints
    platform = pd.DataFrame([{"user_id": "3f2a", "item_id": "9", "day": 0}, {"user_id": "07", "item_id": "9", "day": 4},
                             {"user_id": "3f2a", "item_id": "10", "day": 4}], columns=["user_id", "item_id", "day"])
    pd.testing.assert_frame_equal(_wire(platform), platform, check_exact=True)
    # the ids arrive categorical, their categories the ids as sent (no per-open object is built)
    ids = _wire(opens, categorical=True)["user_id"]
    assert isinstance(ids.dtype, pd.CategoricalDtype) and set(ids.cat.categories) == set(opens["user_id"])


def test_no_opens_decode_to_an_empty_frame():
    decoded = _wire(pd.DataFrame(columns=["user_id", "item_id", "day"]))
    assert list(decoded.columns) == ["user_id", "item_id", "day"] and decoded.empty


def test_same_opens_same_lists_old_form_and_columnar(settings):
    """``recommender.api.recommend`` on the frame the old one-object-per-open handler built and on the columnar
    decoding gives identical lists (control, treatment without a champion, cold start; the learned ranker's case is
    in tests/recommender/test_recommend_ranker.py). Each list is computed from scratch, not from the course cache."""
    from recommender._recommend.service import COURSE_CACHE
    from recommender.api import recommend

    opens = _course(2)
    items = pd.DataFrame({"item_id": [f"item {k}" for k in range(25)], "kind": "page"})
    # what the handler built from the old form: one pydantic object per open → lists → frame
    records = opens.to_dict("records")
    old = pd.DataFrame({"user_id": [o["user_id"] for o in records], "item_id": [o["item_id"] for o in records],
                        "day": [o["day"] for o in records]}, columns=["user_id", "item_id", "day"])
    new = _wire(opens)
    for user in ["user-1", "user-7", "user-30", "newcomer"]:
        for share in (0.0, 1.0):
            COURSE_CACHE.clear()
            a = recommend(user_id=user, course_id="c", interactions=old, items=items, day=60, limit=10,
                          treatment_share=share, settings=settings)
            COURSE_CACHE.clear()
            b = recommend(user_id=user, course_id="c", interactions=new, items=items, day=60, limit=10,
                          treatment_share=share, settings=settings)
            assert a == b and a.items


@pytest.mark.parametrize(("change", "message"), [
    ({"day": [1]}, "equal lengths"),
    ({"user_index": [0, 1, 2]}, "equal lengths"),
    ({"item_index": [0, 3]}, "item_index must be a position in items (0 to 1), got 3 at open 1"),
    ({"user_index": [2, 0]}, "user_index must be a position in users (0 to 1), got 2 at open 0"),
    ({"users": []}, "user_index must be a position in users (0 to -1)"),
    ({"user_index": [0, -1]}, "greater than or equal to 0"),
    ({"day": [-2, 0]}, "greater than or equal to 0"),
    ({"day": [1, 10**30]}, "less than or equal to 100000"),  # never an overflow (500)
    ({"items": ["i0", "x" * 129]}, "at most 128 characters"),
    ({"users": ["u1", "u1"]}, "users must be distinct ids"),
])
def test_malformed_columnar_opens_are_refused_with_the_reason(change, message):
    from serving.data import Opens

    good = {"users": ["u1", "u2"], "items": ["i0", "i1"], "user_index": [0, 1], "item_index": [1, 0], "day": [3, 4]}
    assert Opens.model_validate(good).frame().shape == (2, 3)
    with pytest.raises(ValidationError, match=None) as caught:
        Opens.model_validate_json(json.dumps({**good, **change}))
    assert message in str(caught.value)


def test_the_client_refuses_opens_without_an_id_or_a_whole_day():
    from learnloop.errors import InvalidInput
    from serving.api import encode_opens

    with pytest.raises(InvalidInput, match="have no user_id"):
        encode_opens(pd.DataFrame({"user_id": ["u1", None], "item_id": ["i", "i"], "day": [1, 2]}))
    with pytest.raises(InvalidInput, match="whole number"):
        encode_opens(pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i", "i"], "day": [1.0, 2.5]}))


def test_packed_and_list_columns_decode_to_the_same_frame():
    from serving.api import encode_opens
    from serving.data import Opens

    opens = _course(3)
    packed, plain = encode_opens(opens), encode_opens(opens, packed=False)
    assert isinstance(packed["day"], str) and isinstance(plain["day"], list)
    pd.testing.assert_frame_equal(Opens.model_validate_json(json.dumps(packed)).frame(),
                                  Opens.model_validate_json(json.dumps(plain)).frame(), check_exact=True)


def _packed(values) -> str:
    import base64

    return base64.b64encode(np.asarray(values, dtype="<i4").tobytes()).decode()


@pytest.mark.parametrize(("change", "message"), [
    ({"day": "not base64!"}, "day is not valid base64"),
    ({"day": "AAAA\nAAAA"}, "day is not valid base64"),
    ({"day": "AAAA"}, "must be whole little-endian int32 values, got 3 bytes"),
    ({"day": _packed([1])}, "equal lengths"),
    ({"item_index": _packed([0, 5])}, "item_index must be a position in items (0 to 1), got 5 at open 1"),
    ({"user_index": _packed([0, -4])}, "user_index must be greater than or equal to 0, got -4 at open 1"),
    ({"day": _packed([3, 200_000])}, "day must be less than or equal to 100000, got 200000 at open 1"),
])
def test_malformed_packed_opens_are_refused_with_the_reason(change, message):
    from serving.data import Opens

    good = {"users": ["u1", "u2"], "items": ["i0", "i1"], "user_index": _packed([0, 1]),
            "item_index": _packed([1, 0]), "day": _packed([3, 4])}
    assert Opens.model_validate(good).frame().shape == (2, 3)
    with pytest.raises(ValidationError) as caught:
        Opens.model_validate_json(json.dumps({**good, **change}))
    assert message in str(caught.value)


def test_the_client_falls_back_to_lists_for_a_service_that_predates_packing():
    """Upgrading the platform before the model service: the old service's 400 ("should be a valid list") makes the
    client send the same opens as JSON lists once."""
    import httpx

    from serving.api import RecommendClient

    bodies = []

    def old_service(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if isinstance(body["opens"]["day"], str):
            return httpx.Response(400, json={"error": "1 validation error", "detail": [
                {"loc": ["opens", "day"], "msg": "Input should be a valid list"}]})
        return httpx.Response(200, json={"user_id": "u1", "course_id": "c1", "experiment": "recommender-v1",
                                         "variant": "control", "cold_start": False, "items": [
                                             {"item_id": "item 1", "score": 1.0, "reason": "popular"}]})

    client = RecommendClient(base_url="http://model-service", transport=httpx.MockTransport(old_service))
    served = client.recommend(user_id="u1", course_id="c1", interactions=_course(4),
                              items=pd.DataFrame({"item_id": ["item 1"], "kind": ["page"]}), day=30)
    assert [i.item_id for i in served.items] == ["item 1"]
    assert isinstance(bodies[0]["opens"]["day"], str) and isinstance(bodies[1]["opens"]["day"], list)


def test_the_client_refuses_days_a_packed_column_cannot_hold():
    from learnloop.errors import InvalidInput
    from serving.api import encode_opens

    with pytest.raises(InvalidInput, match="within 0..100000"):
        encode_opens(pd.DataFrame({"user_id": ["u1"], "item_id": ["i"], "day": [2**32 + 5]}))


def test_only_the_ids_the_opens_use_are_sent():
    """The platform's opens are categorical and filtered to the course's items; the categories keep every id ever
    posted (a 200-character junk content id, say). Sending those would make every request of the course a 422."""
    from serving.api import encode_opens
    from serving.data import Opens

    posted = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "item_id": ["i1", "x" * 200, "i2"], "day": [1, 2, 3]})
    posted = posted.astype({"user_id": "category", "item_id": "category"})
    course = posted[posted["item_id"].isin({"i1", "i2"})]
    wire = encode_opens(course)
    assert sorted(wire["items"]) == ["i1", "i2"] and wire["users"] == ["u1"]
    frame = Opens.model_validate_json(json.dumps(wire)).frame()
    assert list(frame["item_id"].astype(str)) == ["i1", "i2"]
