"""SPARQL 1.1 Protocol details as pure functions: request parsing, Accept negotiation, errors.

Kept free of any store so other blueprints (API, pages) can reuse negotiation and errors.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from flask import Response
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from service.store.results import GRAPH_FORMATS, SOLUTION_FORMATS
from service.web.problems import PROBLEM_JSON, problem, respond

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
    "n3": "text/turtle",  # every Turtle document is N3; SPARQLWrapper's N3 means this
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
    "application/turtle": "text/turtle",
    "text/n3": "text/turtle",
    "text/rdf+n3": "text/turtle",
    "text/plain": "application/n-triples",
    "application/json+ld": "application/ld+json",
}
# `format=` values whose meaning depends on what the query returns (see format_media).
GRAPH_FLAVOUR: dict[str, str] = {
    "xml": "application/rdf+xml",
    "application/xml": "application/rdf+xml",
    "json": "application/ld+json",
    "application/json": "application/ld+json",
}
MAX_ACCEPT = 4096  # characters of an Accept header we read; more is not a real client
MAX_ERROR_MESSAGE = 2048  # characters of an error message sent back
# What an error can be written as: problem+json first, so */* and JSON of any kind get it.
ERROR_MEDIA = (PROBLEM_JSON, "application/json", "text/plain")
SOLUTION_MEDIA = list(SOLUTION_FORMATS)
GRAPH_MEDIA = list(GRAPH_FORMATS)

FORMAT_PARAMETERS = ("format", "output", "results")

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
    format: tuple[str, ...] = ()  # format= / output= / results= values, in request order
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
    url_params = form_fields(query_string)
    if method == "GET":
        params, query_values = url_params, url_params.get("query", [])
    elif method == "POST":
        params, query_values = _post_parameters(_media(content_type), url_params, body)
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
    # `output` and `results` are the names other endpoints (and SPARQLWrapper) also send.
    formats = tuple(v for name in FORMAT_PARAMETERS for v in params.get(name, []))
    return QueryRequest(
        query,
        tuple(params.get("default-graph-uri", [])),
        tuple(params.get("named-graph-uri", [])),
        formats,
        params,
    )


def _post_parameters(
    media: str, url_params: dict[str, list[str]], body: bytes
) -> tuple[dict[str, list[str]], list[str]]:
    """The parameters and query values of a POST: form-encoded (query in the body's fields,
    URL parameters added) or direct (the body is the query)."""
    if media == "application/x-www-form-urlencoded":
        params = form_fields(_text(body))
        for key, values in url_params.items():
            params.setdefault(key, []).extend(values)
        return params, params.get("query", [])
    if media == "application/sparql-query":
        if "query" in url_params:
            raise ProtocolError(400, "a direct POST carries the query in its body, not ?query")
        return url_params, [_text(body)]
    if media == "application/sparql-update":
        raise ProtocolError(400, _read_only("application/sparql-update"))
    raise ProtocolError(
        400,
        f"unsupported media type {media or '(none)'!r}: POST a query as "
        "application/sparql-query or application/x-www-form-urlencoded",
    )


def form_fields(text: str) -> dict[str, list[str]]:
    """`urllib.parse.parse_qs(text, keep_blank_values=True)`, with a faster unquote: a query
    sent form-encoded is mostly escapes (`%3A`, `%7B`), and urllib's loop over them cost
    100-350 us per named query on the event loop, more than Oxigraph takes to answer one."""
    fields: dict[str, list[str]] = {}
    for item in text.split("&"):
        if item:
            name, _, value = item.partition("=")
            fields.setdefault(_unquote_plus(name), []).append(_unquote_plus(value))
    return fields


def _unquote_plus(text: str) -> str:
    """`urllib.parse.unquote_plus`: each `%XX` made a `\\xXX` escape (after doubling every
    backslash) and decoded by `codecs.escape_decode`, in C; text with a `%` that does not start
    an escape goes to urllib itself, so both always agree (tests/test_form_fields.py)."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    try:
        escaped = text.encode("utf-8").replace(b"\\", b"\\\\").replace(b"%", b"\\x")
        raw = codecs.escape_decode(escaped)[0]
    except ValueError:  # also UnicodeEncodeError (a lone surrogate)
        return unquote(text)
    return raw.decode("utf-8", "replace")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, "the request body is not UTF-8") from None


def _read_only(what: str) -> str:
    return f"SPARQL Update ({what}) is not accepted: this endpoint is read-only"


def _accept(header: str | None, offered: Sequence[str] = ()) -> MIMEAccept:
    """The Accept header as werkzeug parses it ('*/*' when absent), with the synonyms clients
    send for our formats renamed (unless the synonym is itself offered)."""
    if not header or not header.strip():
        header = "*/*"
    parsed = parse_accept_header(header[:MAX_ACCEPT], MIMEAccept)
    values = []
    for value, q in parsed:
        media = value.split(";")[0].strip().lower()
        if media not in offered:
            media = MEDIA_SYNONYMS.get(media, media)
        values.append((media, q))
    return MIMEAccept(values)


def parse_accept(header: str | None) -> list[tuple[str, float]]:
    """Media ranges with their q-values, best first ('*/*' when absent)."""
    return [(media, float(q)) for media, q in _accept(header)]


def negotiate(accept: str | None, offered: Sequence[str]) -> str | None:
    """The offered media type the client likes best (werkzeug's rules: the most specific
    matching range decides, q=0 excludes); ties go to our order; None = 406."""
    return _accept(accept, offered).best_match(offered)


def format_media(name: str, offered: Sequence[str]) -> str | None:
    """The media type a `format=` value names, for the kind of answer offered.

    As other endpoints do, `xml` and `json` mean the XML/JSON flavour of what the query
    returns: SPARQL results for SELECT/ASK, RDF/XML and JSON-LD for CONSTRUCT/DESCRIBE.
    """
    key = name.strip().lower()
    graph = any(m in GRAPH_FORMATS for m in offered) and not any(
        m in SOLUTION_FORMATS for m in offered
    )
    if graph and key in GRAPH_FLAVOUR:
        return GRAPH_FLAVOUR[key]
    media = FORMAT_ALIASES.get(key, MEDIA_SYNONYMS.get(key, key))
    if media in offered:
        return media
    known = media in SOLUTION_FORMATS or media in GRAPH_FORMATS or key in FORMAT_ALIASES
    return media if known else None


def choose_format(
    fmt: str | Sequence[str] | None, accept: str | None, offered: Sequence[str]
) -> str:
    """format= wins over Accept; raises ProtocolError 406 when nothing offered is acceptable.

    Several format values (SPARQLWrapper sends `format`, `output` and `results`, some twice)
    are read in order and the first one we can produce wins. A value naming a real format
    this kind of query cannot give (Turtle for a SELECT) is refused like an unknown one,
    unless another value can be produced.
    """
    values = [fmt] if isinstance(fmt, str) else list(fmt or ())
    values = [v for v in values if v and v.strip()]
    for value in values:
        media = format_media(value, offered)
        if media is not None and media in offered:
            return media
    if values:
        raise ProtocolError(
            406,
            f"format {_clip(values[0], 60)!r} is not available here; use one of: "
            + ", ".join(offered),
        )
    media = negotiate(accept, offered)
    if media is None:
        # Never echo the header: it is the client's and may be huge.
        raise ProtocolError(
            406, "no format in the Accept header can be produced; available: " + ", ".join(offered)
        )
    return media


def body_too_large(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def error_response(
    status: int,
    message: str,
    accept: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The service's one error shape, RFC 9457 problem details (service.web.problems).

    The exception: a client whose Accept prefers text/plain to JSON gets the detail as text.
    SPARQL tools (curl scripts, older SPARQLWrapper error paths, terminal users) ask for
    plain text and print the body as the parse error; a JSON document there is noise.
    Any other Accept, or none, gets problem+json: an error body may be sent even when the
    client's Accept does not list it (RFC 9110 section 15.5.7 allows it), and a 406 must be.

    The message is clipped: an error never sends back more than a few KB of what the client
    sent (a parse error quotes the query, a 406 the format asked for)."""
    message = _clip(message, MAX_ERROR_MESSAGE)
    if accept and accept.strip() and negotiate(accept, ERROR_MEDIA) == "text/plain":
        response = Response(message + "\n", status=status, mimetype="text/plain")
    else:
        response = respond(problem(status, message))
    response.headers.update(CORS_HEADERS)
    response.headers.update(headers or {})
    return response
