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
from typing import Any

import pyoxigraph as ox
from flask import Blueprint, Response, current_app, redirect, render_template, request

from service.kb.sources import NS, PREFIXES
from service.query import jsonld
from service.store.backends import StoreError
from service.web.api import context_url, run_construct, run_select
from service.web.protocol import ProtocolError, choose_format, error_response

bp = Blueprint("linked_data", __name__, template_folder="templates")

HTML = "text/html"
LD_MEDIA = [HTML, "text/turtle", "application/ld+json", "application/n-triples"]
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


def entity_href(iri: str) -> str:
    """Our IRIs link to their page here; others link out."""
    return "/cmpkg/" + iri[len(NS) :] if iri.startswith(NS) else iri


@bp.get("/cmpkg/<path:rest>")
def dereference(rest: str) -> Response:
    accept = request.headers.get("Accept")
    try:
        fmt = request.args.get("format")
        media = HTML if fmt and fmt.lower() in FORMAT_NAMES else None
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
        return error_response(err.status, err.message, accept, {"Vary": "Accept"})
    except StoreError as err:
        return error_response(err.status, err.message, accept, {"Vary": "Accept"})


def _alias(segment: str, rest: str) -> Response:
    target = f"/cmpkg/{segment}/{rest}"
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    return redirect(target, code=308)


for _segment in SEGMENTS:
    bp.add_url_rule(
        f"/{_segment}/<path:rest>",
        f"alias_{_segment.replace('-', '_')}",
        lambda rest, _s=_segment: _alias(_s, rest),
        methods=["GET"],
    )


def _not_found(rest: str, accept: str | None) -> Response:
    return error_response(
        404, f"no resource {NS}{rest} in this knowledge graph", accept, {"Vary": "Accept"}
    )


def _describe_query(node: ox.NamedNode) -> str:
    iri = str(node)  # serialised by Oxigraph: a checked IRI, nothing else
    return (
        f"CONSTRUCT {{ {iri} ?p ?o . ?s ?q {iri} }} "
        f"WHERE {{ {{ {iri} ?p ?o }} UNION {{ ?s ?q {iri} }} }}"
    )


def _rdf(triples: list[ox.Triple], media: str, focus: str) -> Response:
    headers = {"Vary": "Accept"}
    if media == "application/ld+json":
        document = jsonld.graph_document(triples, context_ref=context_url(), first=focus)
        body: bytes | str = json.dumps(document, ensure_ascii=False, indent=1)
    elif media == "text/turtle":
        body = ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES)
    else:
        body = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)
    content_type = media if media == "application/ld+json" else f"{media}; charset=utf-8"
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
        f"?cert (SAMPLE(?certl0) AS ?certl) ?status WHERE {{ "
        f"?st ?p {iri} ; <{CMP}source> ?src . "
        f"OPTIONAL {{ ?st <{RDFS}label> ?stl0 }} OPTIONAL {{ ?src <{RDFS}label> ?srcl0 }} "
        f"OPTIONAL {{ ?st <{CMP}certainty> ?cert OPTIONAL {{ ?cert <{RDFS}label> ?certl0 }} }} "
        f"OPTIONAL {{ ?st <{CMP}curationStatus> ?status }} }} "
        "GROUP BY ?st ?src ?cert ?status ORDER BY ?st"
    )
    model = _page_model(node.value, out_rows, in_rows, evidence)
    html = render_template(
        "ld/entity.html", model=model, disclaimer=jsonld.DISCLAIMER, href=entity_href
    )
    return Response(html, content_type="text/html; charset=utf-8", headers={"Vary": "Accept"})


def _page_model(
    iri: str,
    out_rows: list[dict[str, Any]],
    in_rows: list[dict[str, Any]],
    evidence: list[dict[str, Any]],
) -> dict[str, Any]:
    comp = jsonld.compactor()

    def term(cell: Mapping[str, Any], label: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if cell["type"] == "uri":
            shown = _value(label) or comp.iri(cell["value"])
            return {"iri": cell["value"], "text": shown, "curie": comp.iri(cell["value"])}
        text = cell["value"]
        if "xml:lang" in cell:
            text += f" @{cell['xml:lang']}"
        return {"iri": None, "text": text, "curie": None}

    def prop(cell: Mapping[str, Any], label: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"iri": cell["value"], "text": _value(label) or comp.iri(cell["value"])}

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
            types.append(term(row["o"], row.get("ol")))
        if p in {SKOS + m for m in MATCHES}:
            matches.append({**term(row["o"], row.get("ol")), "kind": p[len(SKOS) :]})
        links_out.append(
            {"property": prop(row["p"], row.get("pl")), "value": term(row["o"], row.get("ol"))}
        )
    links_in = [
        {"subject": term(row["s"], row.get("sl")), "property": prop(row["p"], row.get("pl"))}
        for row in in_rows[:MAX_LINKS]
    ]
    statements = [
        {
            "statement": term(row["st"], row.get("stl")),
            "source": term(row["src"], row.get("srcl")),
            "certainty": term(row["cert"], row.get("certl")) if "cert" in row else None,
            "status": comp.iri(row["status"]["value"]) if "status" in row else None,
        }
        for row in evidence
    ]
    return {
        "iri": iri,
        "curie": comp.iri(iri),
        "label": first.get("label") or comp.iri(iri),
        "definition": first.get("definition"),
        "alt_labels": sorted(set(alt_labels)),
        "types": types,
        "matches": matches,
        "links_out": links_out,
        "links_in": links_in,
        "links_in_cut": len(in_rows) > MAX_LINKS,
        "evidence": statements,
        "formats": [("Turtle", "ttl"), ("JSON-LD", "jsonld"), ("N-Triples", "nt")],
    }
