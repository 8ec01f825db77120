"""HTML pages for guideline authors (home, query editor, question gallery, evidence map,
summary of findings), each with a JSON twin (`?format=json` or a `.json` path).

Data comes from the PageSource the app factory installs (service.web.page_source: select,
manifest, queries, run_query, resolver); CMPKG_NODE_MODULES says where npm put the browser
assets (default: <repo>/node_modules). The page layer never parses RDF files nor talks to a
store itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    send_file,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from service.kb.sources import PREFIXES, project_root
from service.query import evidence as views
from service.query import sof as sof_view
from service.query.named import inline, prepare
from service.query.terms import TermResolver, UnknownTerm
from service.vocab import DISCLAIMER
from service.web import page_source
from service.web import prescription_form as rx
from service.web.evidence_map import render_legend, render_table
from service.web.problems import problem, respond, term_problem, term_status

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


# --- plumbing ---------------------------------------------------------------------------


# The data the pages show comes from the app's PageSource (service.web.page_source), the
# one path production and the page tests share.


def _select() -> views.Select:
    return page_source.current().select


def _manifest() -> Mapping[str, Any]:
    return page_source.current().manifest()


def _queries() -> Mapping[str, Any]:
    return page_source.current().queries()


def _run_query() -> Callable[[str, Mapping[str, str]], list[dict[str, str | None]]]:
    return page_source.current().run_query


def _resolver() -> TermResolver:
    """The one term resolver (service.terms), the same index the API resolves values with."""
    return page_source.current().resolver()


def wants_json(suffix: str | None = None) -> bool:
    # The path too: an error handler has no suffix argument, and a `.json` twin's errors are
    # problem+json like the API's.
    if suffix == ".json" or request.path.endswith(".json") or request.args.get("format") == "json":
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


def render(template: str, model: Any, *, status: int = 200, **context: Any) -> ResponseReturnValue:
    if wants_json(context.pop("suffix", None)):
        return jsonify(views.to_json(model)), status
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


# The kind of term each page parameter names, as the API's parameters of the same name.
TERM_CLASSES = {
    "condition": views.CONDITION_CLASS,
    "modality": views.MODALITY_CLASS,
    "outcome": views.OUTCOME_CLASS,
}


def _term_arg(name: str, default: str | None = None) -> str | None:
    """The IRI a page parameter names (IRI, CURIE, label, synonym or code), resolved as the
    API resolves it; UnknownTerm (-> 404/422 page with suggestions) when it names none."""
    value = request.args.get(name, "").strip() or default
    if not value:
        return None
    return _resolver().resolve(value, TERM_CLASSES[name], name)


def _required_term(name: str) -> str:
    value = _term_arg(name)
    if value is None:
        abort(400, description=f"missing parameter {name!r}: name a {name}")
    return value


def _suggestion_links(err: UnknownTerm) -> list[dict[str, str]]:
    """Each suggestion as a link to this page with the parameter replaced by it."""
    links = []
    for suggestion in err.suggestions:
        args = request.args.to_dict()
        args.pop("format", None)
        if err.parameter:
            args[err.parameter] = suggestion
        links.append({"text": suggestion, "href": request.path + "?" + urlencode(args)})
    return links


@pages.errorhandler(UnknownTerm)
def _unknown_term(err: UnknownTerm) -> ResponseReturnValue:
    status = term_status(err)
    if wants_json():
        return _problem_json(term_problem(err))
    model = {
        "status": status,
        "title": "Ambiguous term" if status == 422 else "Unknown term",
        "detail": str(err),
        "parameter": err.parameter,
        "value": err.value,
        "suggestions": _suggestion_links(err),
    }
    return _error_page(model)


@pages.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> ResponseReturnValue:
    status = err.code or 500
    detail = err.description or err.name
    if wants_json():
        return _problem_json(problem(status, detail))
    return _error_page(
        {"status": status, "title": err.name, "detail": detail, "parameter": "", "suggestions": []}
    )


def _problem_json(body: dict[str, Any]) -> ResponseReturnValue:
    return respond(body)


def _error_page(model: dict[str, Any]) -> ResponseReturnValue:
    html = render_template(
        "error.html",
        model=model,
        disclaimer=DISCLAIMER,
        manifest=_safe_manifest(),
        json_href=json_href(),
    )
    return html, model["status"]


def _safe_manifest() -> Mapping[str, Any]:
    # An error page must render even when the store that failed is the one asked.
    try:
        return _manifest()
    except Exception:
        return {}


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


DEFAULT_EDITOR_QUERY = """PREFIX cmp: <https://w3id.org/cmpkg/vocab/>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>

SELECT ?claim ?label WHERE { ?claim a cmp:EvidenceClaim ; rdfs:label ?label } LIMIT 10
"""


def editor_text(query: Any, resolver: TermResolver) -> str:
    """A question as the editor opens it: its defaults written in, as the API would bind them.

    The file's own PREFIX lines are the only ones (each query declares what it uses). A
    required parameter without a default cannot be written in; the tab then says so.
    """
    try:
        prepared = prepare(query, {}, resolver)
    except (UnknownTerm, ValueError) as err:
        return f"# Fill in the parameters before running: {err}\n" + query.text
    return inline(prepared)


@pages.route("/query")
@pages.route("/query<any('.json'):suffix>")
def query_editor(suffix: str | None = None) -> ResponseReturnValue:
    """YASGUI wired to /sparql, one tab per competency question with its defaults bound."""
    resolver = _resolver()
    tabs = [
        {"name": q.name, "summary": q.summary or "", "query": editor_text(q, resolver)}
        for q in sorted(_queries().values(), key=lambda q: q.name)
    ]
    config = {
        "endpoint": current_app.config.get("CMPKG_SPARQL_PATH", "/sparql"),
        # For showing IRIs as CURIEs in results; never written into a query.
        "prefixes": dict(PREFIXES),
        "default_query": DEFAULT_EDITOR_QUERY,
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
    model["suggestion_links"] = []
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
            # Each suggestion links to the same question with it in place of the typo.
            if isinstance(err, UnknownTerm):
                model["suggestion_links"] = _suggestion_links(err)
            # Only an explicit run is a bad request; the first view still shows the form. A
            # term that names nothing is a 404 (several: 422), as in the API.
            bad = term_status(err) if isinstance(err, UnknownTerm) else 400
            status = bad if "run" in request.args else 200
        else:
            iris = {str(v) for r in rows for v in r.values() if views.is_iri(str(v))}
            model["table"] = views.result_table(
                rows,
                views.fetch_labels(_select(), iris),
                list(rows[0]) if rows else None,
                getattr(query, "columns", None),
            )
    if wants_json(suffix):
        return jsonify(views.to_json(model)), status
    choices = {v for p in params for v in [*p["enum"], p["default"]] if views.is_iri(v)}
    labels = views.fetch_labels(_select(), choices)
    return render("question.html", model, status=status, labels=labels)


@pages.route("/evidence-map")
@pages.route("/evidence-map<any('.json'):suffix>")
def evidence_map(suffix: str | None = None) -> ResponseReturnValue:
    outcome = _term_arg("outcome", views.DEFAULT_OUTCOME)
    model = views.evidence_map(_select(), outcome or views.DEFAULT_OUTCOME)
    return render(
        "evidence_map.html",
        model,
        suffix=suffix,
        table=render_table(model),
        legend=render_legend(model),
    )


@pages.route("/evidence")
@pages.route("/evidence<any('.json'):suffix>")
def evidence(suffix: str | None = None) -> ResponseReturnValue:
    model = views.evidence_cell(
        _select(),
        _required_term("condition"),
        _required_term("modality"),
        _term_arg("outcome"),
    )
    return render("evidence.html", model, suffix=suffix)


FOOTNOTE_BY = {
    "source": "Source",
    "project": "Project rating",
    "heuristic": "Project heuristic",
    "cap": "Source cap",
    "directness": "Indirectness",
    "status": "Curation",
}


@pages.route("/sof")
@pages.route("/sof<any('.json', '.csv'):suffix>")
def sof(suffix: str | None = None) -> ResponseReturnValue:
    condition = _term_arg("condition")
    modality = _term_arg("modality")
    select = _select()
    choices: dict[str, Any] = {
        "conditions": views.fetch_hierarchy(select, views.CONDITION_CLASS),
        "modalities": views.fetch_hierarchy(select, views.MODALITY_CLASS),
    }
    if condition is None:
        empty: dict[str, Any] = {"condition": None, "modality": None, "groups": []}
        empty["choices"] = {k: [views.to_json(t) for t in v] for k, v in choices.items()}
        return render("sof.html", empty, suffix=suffix, **choices)
    model = sof_view.summary_of_findings(select, condition, modality)
    if suffix == ".csv" or request.args.get("format") == "csv":
        name = f"summary-of-findings-{views.local_name(condition)}.csv"
        return Response(
            sof_view.csv_text(model),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    args = {k: v for k, v in request.args.items() if k in ("condition", "modality") and v}
    downloads = {fmt: f"/sof.{fmt}?" + urlencode(args) for fmt in ("csv", "json")}
    return render(
        "sof.html", model, suffix=suffix, downloads=downloads, footnote_by=FOOTNOTE_BY, **choices
    )


# --- prescription -------------------------------------------------------------------------


def _knowledge_base() -> Any:
    from service.web.prescribe import served_knowledge_base  # one artifact, one cache

    kb = served_knowledge_base()
    if kb is None:
        abort(503, "no built knowledge graph is being served")
    return kb


@pages.route("/prescribe", methods=["GET", "POST"])
def prescription() -> ResponseReturnValue:
    """The form for a presentation, answered by the same engine as POST /api/prescribe."""
    from service.web.prescribe import run_prescription

    kb = _knowledge_base()
    offered = rx.choices(kb.resolver)
    # conditions as the map lists them: human ones only, in hierarchy order
    offered["conditions"] = [
        rx.Choice(t.iri, t.key, t.label) for t in views.human_conditions(_select())
    ]
    context: dict[str, Any] = {
        "choices": offered,
        "form": request.form,
        "answer": None,
        "problem": None,
        "body": None,
        "circles": rx.circles,
    }
    status = 200
    if request.method == "POST":
        body = rx.presentation(request.form, [p.key for p in offered["pathologies"]])
        context["body"] = body
        # the same sandboxed worker, deadline and memory cap as POST /api/prescribe
        status, raw = run_prescription(json.dumps(body).encode("utf-8"))
        document = json.loads(raw)
        if status == 200:
            context["answer"] = document
        else:
            problems = document.get("violations", [])
            context["problem"] = {"message": document.get("detail", ""), "problems": problems}
    if wants_json():
        if context["problem"]:
            detail = context["problem"]["message"]
            return _problem_json(problem(status, detail, "invalid-presentation", problems=problems))
        if context["answer"]:
            return jsonify(context["answer"]), status
        return jsonify({k: [views.to_json(c) for c in v] for k, v in offered.items()}), status
    return render("prescribe.html", None, status=status, **context)
