"""The READMEs as a newcomer reads them: every `learnloop …` command and option they name exists, every API call
and page they name is a route (with the method and the required query parameters they show), every JSON body in
their curl examples is accepted by its route, the ids of "First steps" are the demo's, and the OpenAPI reads well
(each operation tagged, summarised, its errors documented with the body the API sends). Seconds, no server."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md"))]
SAMPLE_ID = "0b5c6a3e-6f0e-4a43-9d55-2f7e3c1b9a10"
SHELL_VALUES = {"$1": "learner1@learnloop.example", "$PASSWORD": "the-demo-password"}  # the README's `token` helper


def _code(text: str) -> list[str]:
    """Fenced blocks (with backslash continuations joined) and inline code spans, in order."""
    spans = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        spans += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    spans += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    return spans


@cache
def _cli():
    import typer

    from learnloop.cli import build_app

    return typer.main.get_command(build_app())


def _cli_mentions() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for span in _code(doc.read_text()):
            for match in re.finditer(r"(?:^|[\s(=$])learnloop ([^#|;&`]*)", span.split(" # ")[0]):
                found.append((doc.relative_to(ROOT).as_posix(), match.group(1).strip()))
    return found


def test_every_documented_command_and_option_exists():
    problems = []
    mentions = _cli_mentions()
    assert len(mentions) > 40  # the READMEs name many commands: the extraction works
    for doc, text in mentions:
        words = text.replace("[", " ").replace("]", " ").split()
        command, path = _cli(), []
        for word in words:
            if not re.fullmatch(r"[a-z][a-z-]*", word) or not hasattr(command, "commands"):
                break
            if word not in command.commands:
                if not path:  # prose such as "learnloop is …" inside a code span never happens; a typo does
                    problems.append(f"{doc}: `learnloop {text}`: no command {word!r}")
                break
            command, path = command.commands[word], [*path, word]
        options = {opt for param in command.params
                   for opt in (*param.opts, *getattr(param, "secondary_opts", ()))} | {"--help"}
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text):
            if option not in options:
                problems.append(f"{doc}: `learnloop {' '.join(path)}` has no option {option} (`learnloop {text}`)")
    assert problems == [], "\n".join(problems)


@cache
def _app():
    from learnloop.asgi import create_platform_app

    return create_platform_app()


@dataclass(frozen=True)
class Route:
    path: str
    methods: frozenset[str]
    route: object  # the APIRoute (its dependant knows the query and body parameters)

    def matches(self, path: str) -> bool:
        return re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(self.path)), path) is not None


@cache
def _routes() -> list[Route]:
    """Every route of the served app with its full path (FastAPI nests the included routers)."""
    from fastapi.routing import iter_route_contexts

    return [Route(c.path, frozenset(c.methods or ()), c.route) for c in iter_route_contexts(_app().routes)
            if getattr(c.route, "dependant", None) is not None]


_METHOD_PATH = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) `?(/[^\s`,)]*)")
_CURL = re.compile(r"curl\b.*?(?:-X\s*(GET|POST|PUT|DELETE|PATCH)\b.*?)?\"?\$API(/[^\s\"']*)")
_PAGE = re.compile(r"http://127\.0\.0\.1:8000(/[^\s`),*]*)")


def _mentions() -> list[tuple[str, str, str]]:
    """(doc, method, path with optional query) of every API call and page the docs name."""
    found = []
    for doc in DOCS:
        name, text = doc.relative_to(ROOT).as_posix(), doc.read_text()
        for method, path in _METHOD_PATH.findall(text):
            found.append((name, method, path))
        for span in _code(text):
            for method, path in _CURL.findall(span):
                found.append((name, method or "GET", path))
        for path in _PAGE.findall(text):
            found.append((name, "GET", path))
    return found


def _concrete(path: str) -> tuple[str, str, bool]:
    """A documented path as a request path (placeholders → an id), its query string, and whether it is a prefix."""
    path = path.replace("[", "").replace("]", "").rstrip(".:;")
    prefix = path.endswith("…")
    path, _, query = path.rstrip("…").partition("?")
    path = re.sub(r"\{[^}]*\}|\$\w+|<[^>]*>", SAMPLE_ID, path)
    return path.rstrip("/") or "/", query, prefix


def test_every_documented_call_and_page_is_a_route():
    problems = []
    mentions = _mentions()
    assert len(mentions) > 40
    other_paths = {"/docs", "/openapi.json", "/metrics", "/healthz"}
    # The model service's routes (serving/README.md): BentoML APIs of serving/_service.py, not the platform's.
    model_service = set(re.findall(r'@bentoml\.api\(route="([^"]+)"', (ROOT / "serving" / "_service.py").read_text()))
    model_service |= {"/readyz", "/livez"}
    for doc, method, documented in mentions:
        path, query, prefix = _concrete(documented)
        if path in other_paths:
            continue
        if path in model_service:
            continue
        if not path.startswith(("/api/", "/staff", "/grading", "/operator")):
            path = "/api/v1" + path  # the short form of an API path (`POST /events` in the figures table)
        if prefix:
            if not any(r.path.startswith(path) for r in _routes()):
                problems.append(f"{doc}: no route starts with {documented}")
            continue
        routes = [r for r in _routes() if r.matches(path)]
        if not routes:
            problems.append(f"{doc}: {method} {documented}: no such route")
            continue
        allowed = [r for r in routes if method in r.methods]
        if not allowed:
            problems.append(f"{doc}: {method} {documented}: the route takes {sorted(set().union(*(r.methods for r in routes)))}")
            continue
        given = {part.split("=")[0] for part in query.split("&") if part}
        required = {p.alias for p in allowed[0].route.dependant.query_params if p.field_info.is_required()}
        if required - given:
            problems.append(f"{doc}: {method} {documented} leaves out the required {sorted(required - given)}")
    assert problems == [], "\n".join(problems)


def test_json_bodies_of_the_curl_examples_are_accepted():
    from pydantic import TypeAdapter

    checked = 0
    problems = []
    for doc in DOCS:
        for span in _code(doc.read_text()):
            if "curl" not in span or " -d " not in span:
                continue
            words = shlex.split(span.split(" # ")[0].replace("$API", ""))
            method = next((w[2:] or words[words.index(w) + 1] for w in words if w.startswith("-X")), "POST")
            urls = [w for w in words if w.startswith("/api/")]
            if not urls:
                continue  # the model service's examples (serving/README.md)
            body = re.sub(r"\$\w+", lambda m: SHELL_VALUES.get(m.group(0), SAMPLE_ID), words[words.index("-d") + 1])
            path, _, _ = _concrete(urls[0])
            route = next(r.route for r in _routes() if r.matches(path) and method in r.methods)
            try:
                TypeAdapter(route.body_field.field_info.annotation).validate_python(json.loads(body))
            except Exception as exc:  # noqa: BLE001 - reported below with the example
                problems.append(f"{doc}: {method} {path} {body}: {exc}")
            checked += 1
    assert checked >= 3
    assert problems == [], "\n".join(problems)


def test_every_documented_setting_is_read():
    """A `LEARNLOOP_*` variable the docs name is a Settings field or one the code reads itself."""
    from learnloop.settings import Settings

    known = {f"LEARNLOOP_{name.upper()}" for name in Settings.model_fields}
    for source in [*ROOT.glob("*/**/*.py"), *ROOT.glob("notebooks/*.ipynb")]:
        if ".venv" not in source.parts and "tests" not in source.parts:
            known |= set(re.findall(r"LEARNLOOP_[A-Z0-9_]+", source.read_text()))
    named = {(doc.relative_to(ROOT).as_posix(), var) for doc in DOCS
             for var in re.findall(r"LEARNLOOP_[A-Z0-9_]*[A-Z0-9]", doc.read_text())}
    assert {(doc, var) for doc, var in named if var not in known} == set()


def test_first_steps_use_the_demo_ids():
    """The README's commands carry the demo's fixed ids: they must be the ones the demo creates."""
    from learnloop.demo import (
        ESSAY_COURSE_ID,
        ESSAY_LEARNER_IDS,
        ESSAY_READING_IDS,
        ESSAY_READINGS,
        catalog_course_id,
    )

    readme = (ROOT / "README.md").read_text()
    ids = {"essay course": ESSAY_COURSE_ID, "learner 1": ESSAY_LEARNER_IDS[0], "edX catalog course":
           catalog_course_id("edx"), "first reading": ESSAY_READING_IDS[0]}
    assert ESSAY_READINGS and all(str(value) in readme for value in ids.values()), ids


@pytest.fixture(scope="module")
def openapi() -> dict:
    return _app().openapi()


def test_every_operation_is_tagged_summarised_and_documents_its_errors(openapi):
    described = {tag["name"] for tag in openapi.get("tags", []) if tag.get("description")}
    assert "HTTPValidationError" not in json.dumps(openapi)  # the API never sends FastAPI's own 422 body
    problems = []
    for path, operations in openapi["paths"].items():
        for method, op in operations.items():
            name = f"{method.upper()} {path}"
            if not op.get("tags") or set(op["tags"]) - described:
                problems.append(f"{name}: tags {op.get('tags')} without a description")
            if not op.get("summary"):
                problems.append(f"{name}: no summary")
            errors = {code: r for code, r in op["responses"].items() if code.startswith(("4", "5"))}
            needed = {"429"} | ({"401"} if path.startswith("/api/v1/auth/") else {"401", "403"})
            if missing := needed - set(errors):
                problems.append(f"{name}: errors {sorted(missing)} not documented")
            for code, response in errors.items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") != "#/components/schemas/Error":
                    problems.append(f"{name}: {code} without the error body")
    assert problems == [], "\n".join(problems)
    assert "Authorization: Bearer" in openapi["info"]["description"]
