"""SPARQL 1.1 Protocol details as pure functions: request parsing, Accept negotiation, errors.

Kept free of any store so other blueprints (API, pages) can reuse negotiation and errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from flask import Response

from service.store.results import GRAPH_FORMATS, SOLUTION_FORMATS

# format= override: short names and file-extension style aliases.
FORMAT_ALIASES: dict[str, str] = {
    "json": "application/sparql-results+json",
    "srj": "application/sparql-results+json",
    "xml": "application/sparql-results+xml",
    "srx": "application/sparql-results+xml",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "turtle": "text/turtle",
    "ttl": "text/turtle",
    "jsonld": "application/ld+json",
    "json-ld": "application/ld+json",
    "nt": "application/n-triples",
    "ntriples": "application/n-triples",
    "n-triples": "application/n-triples",
    "rdfxml": "application/rdf+xml",
    "rdf": "application/rdf+xml",
    "rdf+xml": "application/rdf+xml",
    "nq": "application/n-quads",
    "nquads": "application/n-quads",
    "n-quads": "application/n-quads",
    "trig": "application/trig",
}
# Equivalent names clients send for the formats we offer.
MEDIA_SYNONYMS: dict[str, str] = {
    "application/json": "application/sparql-results+json",
    "application/xml": "application/sparql-results+xml",
    "text/xml": "application/sparql-results+xml",
    "application/x-turtle": "text/turtle",
    "text/plain": "application/n-triples",
    "application/json+ld": "application/ld+json",
}
SOLUTION_MEDIA = list(SOLUTION_FORMATS)
GRAPH_MEDIA = list(GRAPH_FORMATS)

CORS_HEADERS = {
    # Public, read-only data: any origin may read it; credentials are never involved.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Accept, If-None-Match",
    "Access-Control-Expose-Headers": "ETag, X-Result-Truncated",
    "Access-Control-Max-Age": "86400",
}


class ProtocolError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class QueryRequest:
    query: str | None  # None: a request for the service description
    default_graph_uris: tuple[str, ...] = ()
    named_graph_uris: tuple[str, ...] = ()
    format: str | None = None  # the format= override, as given
    params: Mapping[str, list[str]] = field(default_factory=dict)


def _media(header_value: str | None) -> str:
    return (header_value or "").split(";")[0].strip().lower()


def parse_query_request(
    method: str,
    content_type: str | None,
    query_string: str,
    body: bytes,
) -> QueryRequest:
    """One of the three query operations of SPARQL 1.1 Protocol section 2.1."""
    url_params = parse_qs(query_string, keep_blank_values=True)
    media = _media(content_type)
    if method == "GET":
        params = url_params
        query_values = params.get("query", [])
    elif method == "POST":
        if media == "application/x-www-form-urlencoded":
            params = parse_qs(_text(body), keep_blank_values=True)
            for key, values in url_params.items():
                params.setdefault(key, []).extend(values)
            query_values = params.get("query", [])
            if "update" in params:
                raise ProtocolError(400, _read_only("update"))
        elif media == "application/sparql-query":
            params = url_params
            if "query" in params:
                raise ProtocolError(400, "a direct POST carries the query in its body, not ?query")
            query_values = [_text(body)]
        elif media == "application/sparql-update":
            raise ProtocolError(400, _read_only("application/sparql-update"))
        else:
            raise ProtocolError(
                400,
                f"unsupported media type {media or '(none)'!r}: POST a query as "
                "application/sparql-query or application/x-www-form-urlencoded",
            )
    else:
        raise ProtocolError(
            405, "this endpoint is read-only: use GET or POST", {"Allow": "GET, POST, OPTIONS"}
        )
    if "update" in params:
        raise ProtocolError(400, _read_only("update"))
    if len(query_values) > 1:
        raise ProtocolError(400, "exactly one 'query' parameter is allowed")
    query = query_values[0] if query_values else None
    if query is not None and not query.strip():
        raise ProtocolError(400, "the 'query' parameter is empty")
    formats = params.get("format", [])
    return QueryRequest(
        query,
        tuple(params.get("default-graph-uri", [])),
        tuple(params.get("named-graph-uri", [])),
        formats[-1] if formats else None,
        params,
    )


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, "the request body is not UTF-8") from None


def _read_only(what: str) -> str:
    return f"SPARQL Update ({what}) is not accepted: this endpoint is read-only"


def parse_accept(header: str | None) -> list[tuple[str, float]]:
    """Media ranges with their q-values, in header order ('*/*' when absent)."""
    if not header or not header.strip():
        return [("*/*", 1.0)]
    ranges = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        q = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        ranges.append((MEDIA_SYNONYMS.get(media, media), q))
    return ranges


def _quality(media: str, ranges: Sequence[tuple[str, float]]) -> float:
    """The q of the most specific range matching `media` (RFC 9110 section 12.5.1)."""
    best, best_specificity = 0.0, -1
    kind = media.split("/")[0]
    for rng, q in ranges:
        if rng == media:
            specificity = 2
        elif rng == f"{kind}/*":
            specificity = 1
        elif rng == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best, best_specificity = q, specificity
    return best


def negotiate(accept: str | None, offered: Sequence[str]) -> str | None:
    """The offered media type the client likes best; ties go to our order; None = 406."""
    ranges = parse_accept(accept)
    scored = [(_quality(m, ranges), -i, m) for i, m in enumerate(offered)]
    q, _, media = max(scored)
    return media if q > 0 else None


def choose_format(fmt: str | None, accept: str | None, offered: Sequence[str]) -> str:
    """format= wins over Accept; raises ProtocolError 406 when nothing offered is acceptable."""
    if fmt:
        media = FORMAT_ALIASES.get(fmt.lower(), MEDIA_SYNONYMS.get(fmt.lower(), fmt.lower()))
        if media in offered:
            return media
        raise ProtocolError(
            406, f"format {fmt!r} is not available here; use one of: " + ", ".join(offered)
        )
    media = negotiate(accept, offered)
    if media is None:
        raise ProtocolError(
            406, f"cannot produce any of {accept!r}; available: " + ", ".join(offered)
        )
    return media


def error_response(
    status: int,
    message: str,
    accept: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """JSON for clients that ask for JSON of any kind, plain text otherwise."""
    if accept and "json" in accept.lower() and "text/plain" not in accept.lower():
        body = json.dumps({"status": status, "error": message})
        mimetype = "application/json"
    else:
        body, mimetype = message + "\n", "text/plain"
    response = Response(body, status=status, mimetype=mimetype)
    response.headers.update(CORS_HEADERS)
    response.headers.update(headers or {})
    return response
