"""The benchmark's reference limit: plain FastAPI + uvicorn + ONNX Runtime on the champion's ONNX file.

No feature store, no logging, no middleware: the request carries the model inputs. Whatever our service costs
above this is the price of its features (online read, validation, prediction log, hot swap).
Run: ``uvicorn --factory serving._limit:create_app`` with ``LEARNLOOP_BENCH_MODEL_DIR`` holding ``model.onnx`` + ``schema.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


class LimitRequest(BaseModel):
    features: list[float]


def create_app() -> FastAPI:
    from models.data import ONNX_FILE, SCHEMA_FILE
    from serving._scorer import ort_session

    model_dir = Path(os.environ["LEARNLOOP_BENCH_MODEL_DIR"])
    schema = json.loads((model_dir / SCHEMA_FILE).read_text())
    names = [item["name"] for item in schema["inputs"]]
    output = schema.get("probability_output", "probabilities")
    positive = int(schema.get("positive_class_index", 1))
    session = ort_session((model_dir / ONNX_FILE).read_bytes())
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"ok": True}

    @app.post("/predict")
    async def predict(request: LimitRequest) -> dict:
        values = np.asarray(request.features, dtype=np.float32)
        feeds = {name: values[i:i + 1].reshape(1, 1) for i, name in enumerate(names)}
        (probabilities,) = session.run([output], feeds)
        return {"risk_score": float(probabilities[0, positive])}

    return app

