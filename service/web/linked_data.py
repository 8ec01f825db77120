"""Every IRI of our namespace dereferences at its own path.

`https://w3id.org/cmpkg/condition/fibromyalgia` is answered at `/cmpkg/condition/fibromyalgia`,
so one permanent-IRI redirect (w3id.org/cmpkg/* -> <deployment>/cmpkg/*) makes every IRI
resolve. Browsers get an HTML page; RDF clients get Turtle, JSON-LD or N-Triples by content
negotiation (or `?format=`), always with `Vary: Accept`. The IRI comes from the URL path and
is checked by Oxigraph's IRI parser before it is written into a query, so a path cannot add
anything to the query but one well-formed IRI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import pyoxigraph as ox
from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from service.kb.sources import NS, PREFIXES, serialize
from service.query import jsonld
from service.store.backends import StoreError
from service.vocab import entity_href
from service.web.api import context_url, run_construct, run_select
from service.web.problems import problem_response
from service.web.protocol import ProtocolError, choose_format, error_response

bp = Blueprint("linked_data", __name__, template_folder="templates")

HTML = "text/html"
LD_MEDIA = [HTML, "text/turtle", "application/ld+json", "application/n-triples"]
# A JSON-LD document is JSON: a client asking for plain JSON (as the API's clients do) gets it.
PLAIN_JSON = "application/json"
DERIVATION_NS = PREFIXES["derivation"]
FORMAT_NAMES = {"html": HTML}
RDFS = PREFIXES["rdfs"]
SKOS = PREFIXES["skos"]
CMP = PREFIXES["cmp"]
MATCHES = ("exactMatch", "closeMatch", "broadMatch", "relatedMatch")
MAX_LINKS = 500  # links in shown on a page; the RDF answers carry them all
# First path segments of our namespaces: pages link entities as /<segment>/<name>.
SEGMENTS = sorted(
    {iri[len(NS) :].split("/")[0] for iri in PREFIXES.values() if iri.startswith(NS)}
    | {"support", "agent", "shape", "ontology"}
)


def _store():
    from service.web import state

    return state(current_app).store


@bp.get("/cmpkg/<path:rest>")
def dereference(rest: str) -> Response:
    accept = request.headers.get("Accept")
    try:
        fmt = request.args.get("format")
        media = HTML if fmt and fmt.lower() in FORMAT_NAMES else None
        if media is None and not fmt:
            best = request.accept_mimetypes.best_match([*LD_MEDIA, PLAIN_JSON])
            media = PLAIN_JSON if best == PLAIN_JSON else None
        media = media or choose_format(fmt, accept, LD_MEDIA)
        try:
            node = ox.NamedNode(NS + rest)
        except ValueError:
            return _not_found(rest, accept)
        if media == HTML:
            return _page(node)
        triples = run_construct(_store(), _describe_query(node))
        if not triples:
            return _not_found(rest, accept)
        return _rdf(triples, media, node.value)
    except ProtocolError as err:
        return _error(err.status, err.message, accept)
    except StoreError as err:
        return _error(err.status, err.message, accept)


def _error(status: int, message: str, accept: str | None) -> Response:
    """problem+json for JSON clients (the API's one error format), plain text otherwise."""
    if accept and "json" in accept.lower():
        return problem_response(status, message, headers={"Vary": "Accept"})
    return error_response(status, message, accept, {"Vary": "Accept"})


def _alias(segment: str, rest: str) -> WerkzeugResponse:
    target = f"/cmpkg/{segment}/{rest}"
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    return cast(Response, redirect(target, code=308))  # Flask makes its own response class


for _segment in SEGMENTS:
    bp.add_url_rule(
        f"/{_segment}/<path:rest>",
        f"alias_{_segment.replace('-', '_')}",
        lambda rest, _s=_segment: _alias(_s, rest),
        methods=["GET"],
    )


def _not_found(rest: str, accept: str | None) -> Response:
    return _error(404, f"no resource {NS}{rest} in this knowledge graph", accept)


def _describe_query(node: ox.NamedNode) -> str:
    iri = str(node)  # serialised by Oxigraph: a checked IRI, nothing else
    return (
        f"CONSTRUCT {{ {iri} ?p ?o . ?s ?q {iri} }} "
        f"WHERE {{ {{ {iri} ?p ?o }} UNION {{ ?s ?q {iri} }} }}"
    )


def _rdf(triples: list[ox.Triple], media: str, focus: str) -> Response:
    headers = {"Vary": "Accept"}
    if media in ("application/ld+json", "application/json"):
        document = jsonld.graph_document(triples, context_ref=context_url(), first=focus)
        body: bytes | str = json.dumps(document, ensure_ascii=False, indent=1)
    elif media == "text/turtle":
        body = serialize(triples, ox.RdfFormat.TURTLE, PREFIXES)
    else:
        body = serialize(triples, ox.RdfFormat.N_TRIPLES)
    json_media = ("application/ld+json", "application/json")
    content_type = media if media in json_media else f"{media}; charset=utf-8"
    return Response(body, content_type=content_type, headers=headers)


# -- the HTML page ----------------------------------------------------------------------------


def _rows(text: str) -> list[dict[str, Any]]:
    return run_select(_store(), text)["results"]["bindings"]


def _value(cell: Mapping[str, Any] | None) -> str | None:
    return None if cell is None else cell["value"]


def _page(node: ox.NamedNode) -> Response:
    iri = str(node)
    out_rows = _rows(
        f"SELECT ?p ?o (SAMPLE(?pl0) AS ?pl) (SAMPLE(?ol0) AS ?ol) WHERE {{ {iri} ?p ?o "
        f"OPTIONAL {{ ?p <{RDFS}label> ?pl0 }} OPTIONAL {{ ?o <{RDFS}label> ?ol0 }} }} "
        "GROUP BY ?p ?o ORDER BY ?p ?o"
    )
    in_rows = _rows(
        f"SELECT ?s ?p (SAMPLE(?sl0) AS ?sl) (SAMPLE(?pl0) AS ?pl) WHERE {{ ?s ?p {iri} "
        f"OPTIONAL {{ ?s <{RDFS}label> ?sl0 }} OPTIONAL {{ ?p <{RDFS}label> ?pl0 }} }} "
        f"GROUP BY ?s ?p ORDER BY ?p ?s LIMIT {MAX_LINKS + 1}"
    )
    if not out_rows and not in_rows:
        return _not_found(node.value[len(NS) :], request.headers.get("Accept"))
    evidence = _rows(
        f"SELECT DISTINCT ?st (SAMPLE(?stl0) AS ?stl) ?src (SAMPLE(?srcl0) AS ?srcl) "
        f"?cert (SAMPLE(?certl0) AS ?certl) ?status (SAMPLE(?statusl0) AS ?statusl) WHERE {{ "
        f"?st ?p {iri} ; <{CMP}source> ?src . "
        f"OPTIONAL {{ ?st <{RDFS}label> ?stl0 }} OPTIONAL {{ ?src <{RDFS}label> ?srcl0 }} "
        f"OPTIONAL {{ ?st <{CMP}certainty> ?cert OPTIONAL {{ ?cert <{RDFS}label> ?certl0 }} }} "
        f"OPTIONAL {{ ?st <{CMP}curationStatus> ?status "
        f"OPTIONAL {{ ?status <{RDFS}label> ?statusl0 }} }} }} "
        "GROUP BY ?st ?src ?cert ?status ORDER BY ?st"
    )
    model = _page_model(node.value, out_rows, in_rows, evidence)
    html = render_template(
        "ld/entity.html",
        model=model,
        disclaimer=jsonld.DISCLAIMER,
        href=entity_href,
        json_href="?format=jsonld",
        manifest={"build_id": _store().build_id},
    )
    return Response(html, content_type="text/html; charset=utf-8", headers={"Vary": "Accept"})


class _Cells:
    """SPARQL JSON cells as what the page shows: the label when the store has one, else the
    CURIE (so the page never shows a bare long IRI)."""

    def __init__(self) -> None:
        self.comp = jsonld.compactor()

    def term(self, cell: Mapping[str, Any], label: Mapping[str, Any] | None = None) -> dict:
        if cell["type"] == "uri":
            shown = _value(label) or self.comp.iri(cell["value"])
            return {"iri": cell["value"], "text": shown, "curie": self.comp.iri(cell["value"])}
        text = cell["value"]
        if "xml:lang" in cell:
            text += f" @{cell['xml:lang']}"
        return {"iri": None, "text": text, "curie": None}

    def prop(self, cell: Mapping[str, Any], label: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"iri": cell["value"], "text": _value(label) or self.comp.iri(cell["value"])}


def _outgoing(cells: _Cells, out_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The entity's own statements: first label and definition, alt labels, types, mappings,
    and every link out (the named ones are also kept apart for the page's header)."""
    first: dict[str, str] = {}
    types: list[dict[str, Any]] = []
    matches: list[dict[str, Any]] = []
    alt_labels: list[str] = []
    links_out = []
    for row in out_rows:
        p = row["p"]["value"]
        if p == RDFS + "label" and "label" not in first:
            first["label"] = row["o"]["value"]
        elif p == SKOS + "definition" and "definition" not in first:
            first["definition"] = row["o"]["value"]
        elif p == SKOS + "altLabel":
            alt_labels.append(row["o"]["value"])
        if p == PREFIXES["rdf"] + "type":
            types.append(cells.term(row["o"], row.get("ol")))
        if p in {SKOS + m for m in MATCHES}:
            matches.append({**cells.term(row["o"], row.get("ol")), "kind": p[len(SKOS) :]})
        links_out.append(
            {
                "property": cells.prop(row["p"], row.get("pl")),
                "value": cells.term(row["o"], row.get("ol")),
            }
        )
    return {
        "label": first.get("label"),
        "definition": first.get("definition"),
        "alt_labels": sorted(set(alt_labels)),
        "types": types,
        "matches": matches,
        "links_out": links_out,
    }


def _incoming(cells: _Cells, in_rows: list[dict[str, Any]]) -> dict[str, Any]:
    links_in: list[dict[str, Any]] = []
    derivations: list[dict[str, Any]] = []
    for row in in_rows[:MAX_LINKS]:
        link = {
            "subject": cells.term(row["s"], row.get("sl")),
            "property": cells.prop(row["p"], row.get("pl")),
        }
        # Derivation records (one per rule and node) explain; they are not things one visits.
        is_record = row["s"]["value"].startswith(DERIVATION_NS)
        (derivations if is_record else links_in).append(link)
    return {
        "links_in": links_in,
        "derivations": derivations,
        "links_in_cut": len(in_rows) > MAX_LINKS,
    }


def _statement(cells: _Cells, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "statement": cells.term(row["st"], row.get("stl")),
        "source": cells.term(row["src"], row.get("srcl")),
        "certainty": cells.term(row["cert"], row.get("certl")) if "cert" in row else None,
        # in words: the status's label ("from a secondary source"), never a raw CURIE
        "status": (_value(row.get("statusl")) or cells.comp.iri(row["status"]["value"]))
        if "status" in row
        else None,
    }


def _page_model(
    iri: str,
    out_rows: list[dict[str, Any]],
    in_rows: list[dict[str, Any]],
    evidence: list[dict[str, Any]],
) -> dict[str, Any]:
    cells = _Cells()
    own = _outgoing(cells, out_rows)
    return {
        "iri": iri,
        "curie": cells.comp.iri(iri),
        **own,
        "label": own["label"] or cells.comp.iri(iri),
        **_incoming(cells, in_rows),
        "evidence": [_statement(cells, row) for row in evidence],
        "formats": [("Turtle", "ttl"), ("JSON-LD", "jsonld"), ("N-Triples", "nt")],
    }
