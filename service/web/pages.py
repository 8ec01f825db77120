"""HTML pages for guideline authors (home, query editor, question gallery, evidence map,
summary of findings), each with a JSON twin (`?format=json` or a `.json` path).

Wiring, set by the app factory:
  CMPKG_SELECT      select(sparql) -> list[dict[str, str | None]]
  CMPKG_MANIFEST    build manifest (build_id, created, graphs); optional
  CMPKG_QUERIES     name -> named query (name, summary, description, tags, parameters, text)
  CMPKG_RUN_QUERY   run(name, values) -> rows; LookupError(.suggestions) on unknown values
  CMPKG_NODE_MODULES  where npm put the browser assets (default: <repo>/node_modules)
The page layer only reads these; it never parses RDF files nor talks to a store itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, jsonify, render_template, request, send_file
from flask.typing import ResponseReturnValue

from service.kb.sources import PREFIXES, project_root
from service.query import evidence as views
from service.web import api
from service.web.evidence_map import render_legend, render_table

pages = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

# The only npm files the pages load, served from our own origin (no CDN, works offline).
VENDOR_FILES = {
    "yasgui.min.js": "@zazuko/yasgui/build/yasgui.min.js",
    "yasgui.min.css": "@zazuko/yasgui/build/yasgui.min.css",
    "axe.min.js": "axe-core/axe.min.js",
}

DISCLAIMER = (
    "Decision support for clinicians and guideline authors. Not advice to patients: "
    "read the certainty and the source of every figure before using it."
)


# --- plumbing ---------------------------------------------------------------------------


# Each of these reads the served store through the API module unless the app config
# provides its own (the page tests run the blueprint on a bare Flask app).


def _select() -> views.Select:
    return current_app.config.get("CMPKG_SELECT") or api.select_rows


def _manifest() -> Mapping[str, Any]:
    if "CMPKG_MANIFEST" in current_app.config:
        return current_app.config["CMPKG_MANIFEST"] or {}
    from service.web import state

    store = state(current_app).store
    return {"build_id": store.build_id, "graphs": store.graph_counts()}


def _queries() -> Mapping[str, Any]:
    if "CMPKG_QUERIES" in current_app.config:
        return current_app.config["CMPKG_QUERIES"]
    return api.catalog().queries


def _run_query() -> Callable[[str, dict[str, str]], list[dict]]:
    return current_app.config.get("CMPKG_RUN_QUERY") or api.run_named


def wants_json(suffix: str | None = None) -> bool:
    if suffix == ".json" or request.args.get("format") == "json":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def json_href() -> str:
    """The JSON twin of the current page."""
    args = request.args.to_dict()
    args["format"] = "json"
    return request.path + "?" + urlencode(args)


def render(template: str, model: Any, status: int = 200, **context: Any) -> ResponseReturnValue:
    if wants_json(context.pop("suffix", None)):
        return jsonify(views.to_json(model) if not isinstance(model, dict) else model), status
    return (
        render_template(
            template,
            model=model,
            disclaimer=DISCLAIMER,
            manifest=_manifest(),
            json_href=json_href(),
            **context,
        ),
        status,
    )


def _term_arg(name: str, namespace: str, default: str | None = None) -> str | None:
    value = request.args.get(name, "").strip() or default
    if not value:
        return None
    try:
        return views.resolve_term(value, namespace)
    except ValueError as err:
        abort(400, description=f"parameter {name!r}: {err}")


def _required_term(name: str, namespace: str) -> str:
    value = _term_arg(name, namespace)
    if value is None:
        abort(400, description=f"missing parameter {name!r}")
    return value


@pages.app_template_filter("entity_href")
def _entity_href(iri: str) -> str:
    return views.entity_href(iri)


@pages.app_template_filter("curie")
def _curie(iri: str) -> str:
    return views.curie(iri)


# --- vendor assets ----------------------------------------------------------------------


@pages.route("/vendor/<name>")
def vendor(name: str) -> ResponseReturnValue:
    relative = VENDOR_FILES.get(name)
    if relative is None:
        abort(404)
    root = Path(current_app.config.get("CMPKG_NODE_MODULES") or project_root() / "node_modules")
    path = root / relative
    if not path.is_file():
        abort(404, description=f"{relative} missing: run scripts/bootstrap.sh")
    return send_file(path, max_age=3600)


# --- pages ------------------------------------------------------------------------------


@pages.route("/")
@pages.route("/index<any('.json'):suffix>")
def home(suffix: str | None = None) -> ResponseReturnValue:
    model = views.home(_select(), _manifest())
    return render("home.html", model, suffix=suffix, questions=_queries())


@pages.route("/query")
@pages.route("/query<any('.json'):suffix>")
def query_editor(suffix: str | None = None) -> ResponseReturnValue:
    """YASGUI wired to /sparql, our prefixes, one tab per competency question."""
    prologue = "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in PREFIXES.items())
    tabs = [
        {"name": q.name, "summary": q.summary or "", "query": q.text}
        for q in sorted(_queries().values(), key=lambda q: q.name)
    ]
    config = {
        "endpoint": current_app.config.get("CMPKG_SPARQL_PATH", "/sparql"),
        "prefixes": dict(PREFIXES),
        "default_query": prologue + "\nSELECT ?s ?p ?o WHERE { ?s ?p ?o } LIMIT 10\n",
        "tabs": tabs,
    }
    return render("query.html", config, suffix=suffix)


def _parameters(query: Any) -> list[dict[str, Any]]:
    out = []
    for p in query.parameters or []:
        out.append(
            {
                "name": p.name,
                "kind": getattr(p, "kind", None) or "string",
                "required": bool(getattr(p, "required", False)),
                "default": getattr(p, "default", None),
                "enum": list(getattr(p, "enum", None) or []),
                "description": getattr(p, "description", None) or "",
            }
        )
    return out


def _query_summary(query: Any) -> dict[str, Any]:
    return {
        "name": query.name,
        "summary": query.summary or "",
        "description": getattr(query, "description", None) or "",
        "tags": list(getattr(query, "tags", None) or []),
        "parameters": _parameters(query),
        "href": f"/questions/{query.name}",
        "api": f"/api/queries/{query.name}",
    }


@pages.route("/questions")
@pages.route("/questions<any('.json'):suffix>")
def questions(suffix: str | None = None) -> ResponseReturnValue:
    model = {"questions": [_query_summary(q) for _, q in sorted(_queries().items())]}
    return render("questions.html", model, suffix=suffix)


@pages.route("/questions/<name>")
@pages.route("/questions/<name><any('.json'):suffix>")
def question(name: str, suffix: str | None = None) -> ResponseReturnValue:
    query = _queries().get(name)
    if query is None:
        abort(404, description=f"no question named {name!r}")
    model: dict[str, Any] = _query_summary(query)
    params = model["parameters"]
    submitted = {p["name"]: request.args.get(p["name"], "").strip() for p in params}
    values = {k: v for k, v in submitted.items() if v}
    model["values"] = {p["name"]: submitted[p["name"]] or (p["default"] or "") for p in params}
    model["text"] = query.text
    model["ran"] = "run" in request.args or not any(p["required"] for p in params)
    model["error"] = None
    model["suggestions"] = []
    model["table"] = None
    status = 200
    downloads = urlencode(values)
    model["downloads"] = {
        fmt: f"/api/queries/{name}?" + urlencode({**values, "format": fmt})
        for fmt in ("csv", "jsonld")
    }
    model["query_string"] = downloads
    if model["ran"]:
        missing = [p["name"] for p in params if p["required"] and not values.get(p["name"])]
        run = _run_query()
        try:
            if missing:
                raise ValueError("please fill in: " + ", ".join(missing))
            rows = run(name, values)
        except (LookupError, ValueError) as err:
            # Unknown terms carry suggestions (LookupError or ValueError, by runner).
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            model["error"] = str(message)
            model["suggestions"] = [str(s) for s in getattr(err, "suggestions", None) or []]
            # Only an explicit run is a bad request; the first view still shows the form.
            status = 400 if "run" in request.args else 200
        else:
            iris = {str(v) for r in rows for v in r.values() if views.is_iri(str(v))}
            model["table"] = views.result_table(rows, views.fetch_labels(_select(), iris))
    json_model = {k: (views.to_json(v) if k == "table" and v else v) for k, v in model.items()}
    if wants_json(suffix):
        return jsonify(json_model), status
    choices = {v for p in params for v in [*p["enum"], p["default"]] if views.is_iri(v)}
    labels = views.fetch_labels(_select(), choices)
    return render("question.html", model, status=status, labels=labels)


@pages.route("/evidence-map")
@pages.route("/evidence-map<any('.json'):suffix>")
def evidence_map(suffix: str | None = None) -> ResponseReturnValue:
    outcome = _term_arg("outcome", "out", "physical-function")
    model = views.evidence_map(_select(), outcome or views.DEFAULT_OUTCOME)
    return render(
        "evidence_map.html",
        model,
        suffix=suffix,
        table=render_table(model),
        legend=render_legend(),
    )


@pages.route("/evidence")
@pages.route("/evidence<any('.json'):suffix>")
def evidence(suffix: str | None = None) -> ResponseReturnValue:
    model = views.evidence_cell(
        _select(),
        _required_term("condition", "cond"),
        _required_term("modality", "mod"),
        _term_arg("outcome", "out"),
    )
    return render("evidence.html", model, suffix=suffix)


@pages.route("/sof")
@pages.route("/sof<any('.json'):suffix>")
def sof(suffix: str | None = None) -> ResponseReturnValue:
    condition = _term_arg("condition", "cond")
    select = _select()
    choices = {
        "conditions": views.fetch_hierarchy(select, views.CONDITION_CLASS),
        "modalities": views.fetch_hierarchy(select, views.MODALITY_CLASS),
    }
    if condition is None:
        empty = {"condition": None, "modality": None, "groups": []}
        empty["choices"] = {k: [views.to_json(t) for t in v] for k, v in choices.items()}
        return render("sof.html", empty, suffix=suffix, **choices)
    model = views.summary_of_findings(select, condition, _term_arg("modality", "mod"))
    return render("sof.html", model, suffix=suffix, **choices)
