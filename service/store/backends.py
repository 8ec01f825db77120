"""Where queries are answered: one small interface, two implementations.

- `EmbeddedStore`: the build artifact in an in-memory pyoxigraph store, queried by forked,
  sandboxed worker processes (service.store.pool): no network, a memory cap, a deadline.
- `RemoteStore`: an existing SPARQL 1.1 store (Oxigraph server, Fuseki, GraphDB, Virtuoso)
  reached through SPARQLWrapper; `push` loads an artifact into it with the Graph Store Protocol.

The server process never parses a query: the text goes to a worker, which reads it with
`service.store.query_check` (SERVICE, LOAD, updates, nesting) and then Oxigraph's parser,
the only one that decides. The remote store uses workers for that check too and forwards
only what passed.
Both produce answers through `service.store.results`, so the same query gives the same bytes on
either backend.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import pyoxigraph as ox
from SPARQLWrapper import POST, URLENCODED, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import SPARQLWrapperException

from service import config
from service.kb.sources import load_dataset, parse_file, solutions
from service.store.binding import inline
from service.store.pool import (
    Limits,
    PoolBusy,
    WorkerCrashed,
    WorkerError,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
)
from service.store.query_check import SERVICE_REFUSED, Refused, inspect, strip_dataset_clauses
from service.store.query_check import has_dataset as query_has_dataset
from service.store.results import GRAPH_FORMATS, Answer, encode_result, is_graph

_FROM = re.compile(r"\bFROM\b", re.IGNORECASE)
# Stands for "an empty graph" when a dataset selects no graph we hold; a URN is never fetched.
EMPTY_GRAPH = "urn:cmpkg:empty-graph"


@dataclass(frozen=True)
class Dataset:
    """Graphs a query sees. None = the service default: union default graph, all named graphs
    (unless the query's own FROM / FROM NAMED select graphs)."""

    default: tuple[str, ...] | None = None
    named: tuple[str, ...] | None = None

    @property
    def is_default(self) -> bool:
        return self.default is None and self.named is None


@dataclass(frozen=True)
class QueryJob:
    """A query for a store. With `form` None the text is untrusted and its form unknown: the
    worker checks it, and the kind of result it gives picks `media_type` (solutions, booleans)
    or `graph_media_type` (CONSTRUCT, DESCRIBE); a None there is a 406 with `refusals`."""

    query: str
    form: str | None  # SELECT, ASK, CONSTRUCT, DESCRIBE, or None (untrusted)
    dataset: Dataset
    media_type: str | None
    row_cap: int
    # Values for `?name` variables, bound by the engine (SEP-0007 substitutions), never
    # pasted into the text; a store that cannot bind renders them with `binding.inline`.
    substitutions: Mapping[str, ox.NamedNode | ox.Literal] = field(default_factory=dict)
    base_iri: str | None = None  # what relative IRIs in the query resolve against
    graph_media_type: str | None = None
    refusals: tuple[str, str] = ("", "")  # 406 messages: (solutions, graph)

    def media_for(self, graph: bool) -> str | None:
        if self.form is not None:
            return self.media_type  # our own query: one shape, one format
        return self.graph_media_type if graph else self.media_type


@dataclass(frozen=True)
class Call:
    """One of our functions run in a worker with a query's limits (e.g. a prescription).

    `function` must be module-level (it travels by name) and return (header, payload bytes)."""

    function: Callable[..., tuple[Any, bytes]]
    args: tuple[Any, ...] = ()


class StoreError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class QueryTimeout(StoreError):
    status = 503


class QueryFailed(StoreError):
    """The store could not evaluate the query (its message is passed on)."""

    status = 400


class StoreUnavailable(StoreError):
    status = 502


class Store(Protocol):
    build_id: str

    def graph_counts(self) -> dict[str, int]:
        """Triples per named graph IRI."""
        ...

    def execute(self, job: QueryJob, timeout: float) -> Answer: ...

    def call(self, call: Call, timeout: float) -> tuple[Any, bytes]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Failure:
    """An evaluation error, returned (not raised) so it crosses the worker pipe intact."""

    status: int
    message: str


# What crosses back from a worker is JSON (service.store.pool): these are its shapes.
def _failure_header(failure: _Failure) -> dict[str, Any]:
    return {"failed": failure.status, "message": failure.message}


def _answer_header(answer: Answer) -> dict[str, Any]:
    return {"media": answer.media_type, "truncated": answer.truncated, "rows": answer.rows}


def _refusal(err: Exception) -> _Failure:
    text = str(err)
    if "unreachable" in text or "os error 101" in text:
        return _Failure(400, SERVICE_REFUSED)  # SERVICE got past the reader; the sandbox held
    return _Failure(400, f"query evaluation failed: {text}")


def _evaluate(store: ox.Store, job: QueryJob) -> tuple[Answer | _Failure, bytes]:
    """In the worker: check, parse and evaluate one query, serialise its answer."""
    try:
        if job.form is None or _FROM.search(job.query):
            has_dataset = query_has_dataset(job.query)
        else:
            has_dataset = False  # our own query text (api, pages) without any FROM
    except Refused as err:
        return _Failure(err.status, err.message), b""
    kwargs: dict[str, Any] = {}
    if job.dataset.is_default:
        # The union flag overrides FROM in Oxigraph, so it is set only when there is none.
        if not has_dataset:
            kwargs["use_default_graph_as_union"] = True
    else:
        kwargs["default_graph"] = [ox.NamedNode(g) for g in job.dataset.default or ()]
        kwargs["named_graphs"] = [ox.NamedNode(g) for g in job.dataset.named or ()]
    if job.base_iri:
        kwargs["base_iri"] = job.base_iri
    if job.substitutions:
        kwargs["substitutions"] = {ox.Variable(k): v for k, v in job.substitutions.items()}
    try:
        result = store.query(job.query, **kwargs)
        graph = is_graph(result)
        media = job.media_for(graph)
        if media is None:
            return _Failure(406, job.refusals[graph]), b""
        answer = encode_result(result, media, job.row_cap, lambda: store.query(job.query, **kwargs))
    except SyntaxError as err:
        return _Failure(400, f"malformed query: {err}"), b""
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        return _refusal(err), b""
    return answer, answer.body


# A QueryJob crosses to a worker as a plain tuple of its fields: pickled and unpickled in a
# third of the time the dataclass takes (about 25 us per query, on the server's event loop
# and in the worker, before anything else happens).
_WireJob = tuple[Any, ...]


def _to_wire(job: QueryJob) -> _WireJob:
    return (
        job.query, job.form, job.dataset.default, job.dataset.named, job.media_type,
        job.row_cap, job.substitutions, job.base_iri, job.graph_media_type, job.refusals,
    )  # fmt: skip


def _from_wire(fields: _WireJob) -> QueryJob:
    query, form, default, named, media, cap, substitutions, base, graph_media, refusals = fields
    return QueryJob(
        query, form, Dataset(default, named), media, cap, substitutions, base, graph_media,
        refusals,
    )  # fmt: skip


def _handle(store: ox.Store | None, job: QueryJob | _WireJob | Call | _Check) -> tuple[Any, bytes]:
    """In the worker: one job, its header made JSON for the way back."""
    if isinstance(job, tuple):
        job = _from_wire(job)
    if isinstance(job, Call):
        return job.function(*job.args)
    outcome: Answer | _Checked | _Failure
    if isinstance(job, _Check):
        outcome, payload = _check(job.query)
    else:
        assert store is not None
        outcome, payload = _evaluate(store, job)
    if isinstance(outcome, _Failure):
        return _failure_header(outcome), b""
    if isinstance(outcome, _Checked):
        return {"form": outcome.form, "default": outcome.from_default,
                "named": outcome.from_named}, payload  # fmt: skip
    return _answer_header(outcome), payload


@contextmanager
def _limits(timeout: float) -> Iterator[None]:
    """Each limit of a pool job turned into the error a client should see."""
    try:
        yield
    except WorkerTimeout:
        raise QueryTimeout(
            f"query stopped: it ran longer than the {timeout:g} s limit of this endpoint"
        ) from None
    except PoolBusy:
        raise QueryTimeout(f"every query worker stayed busy for {timeout:g} s") from None
    except WorkerOutOfMemory as err:
        raise StoreError(str(err), 503) from None
    except (WorkerCrashed, WorkerError) as err:
        raise StoreError(str(err)) from None


def _outcome(pool: WorkerPool, job: object, timeout: float) -> tuple[Any, bytes]:
    with _limits(timeout):
        return pool.run(job, timeout)


async def _outcome_async(pool: WorkerPool, job: object, timeout: float) -> tuple[Any, bytes]:
    with _limits(timeout):
        return await pool.run_async(job, timeout)


def _answer(header: dict[str, Any], payload: bytes) -> Answer:
    _raise_failure(header)
    return Answer(header["media"], payload, bool(header["truncated"]), int(header["rows"]))


def _raise_failure(header: dict[str, Any]) -> None:
    if "failed" in header:
        raise QueryFailed(str(header["message"]), int(header["failed"]))


def load_embedded(artifact: Path, extra: Mapping[Path, str] | None = None) -> ox.Store:
    """The artifact's quads (graphs kept) plus each extra file as the named graph given."""
    store = load_dataset(artifact)
    for path, graph in (extra or {}).items():
        name = ox.NamedNode(graph)
        store.extend(ox.Quad(q.subject, q.predicate, q.object, name) for q in parse_file(path))
    return store


def content_hash(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


class EmbeddedStore:
    def __init__(
        self,
        store: ox.Store,
        build_id: str,
        workers: int = config.default("workers"),
        *,
        limits: Limits | None = None,
    ) -> None:
        self.build_id = build_id
        counts: dict[str, int] = defaultdict(int)
        for quad in store:
            if isinstance(quad.graph_name, ox.NamedNode):
                counts[quad.graph_name.value] += 1
        self._counts = dict(sorted(counts.items()))
        # Fork only now: every worker shares the loaded data copy-on-write.
        self._pool = WorkerPool(partial(_handle, store), workers, limits)

    def graph_counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def workers_replaced(self) -> int:
        return self._pool.replaced

    def execute(self, job: QueryJob, timeout: float) -> Answer:
        return _answer(*_outcome(self._pool, _to_wire(job), timeout))

    async def execute_async(self, job: QueryJob, timeout: float) -> Answer:
        """`execute` from the server's event loop, which it never blocks."""
        return _answer(*await _outcome_async(self._pool, _to_wire(job), timeout))

    def call(self, call: Call, timeout: float) -> tuple[Any, bytes]:
        return _outcome(self._pool, call, timeout)

    def close(self) -> None:
        self._pool.close()


# Graphs a store keeps for itself (Virtuoso: its RDF views, LDP vocabulary, service
# description); never part of the knowledge graph, so never in the default dataset.
ENGINE_GRAPHS = (
    "http://www.openlinksw.com/schemas/virtrdf#",
    "http://www.w3.org/ns/ldp#",
    "http://localuriqaserver/",
)
_BNODE_ID = re.compile(r"[^A-Za-z0-9_]")
_XSD_BOOLEAN = "http://www.w3.org/2001/XMLSchema#boolean"


def normalize_json_results(raw: bytes, ask: bool = False) -> bytes:
    """SPARQL JSON results as the W3C format says, from stores that bend it.

    Virtuoso answers ASK as a one-row table (`__ASK_RETVAL` = 1 or 0), writes xsd:boolean as
    "1"/"0" (valid lexical forms, not the canonical ones) and names blank nodes
    `nodeID://b123` (not a valid label). Same values, canonical forms; a conforming answer
    (Oxigraph's) passes through unchanged.
    """
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw  # the parser reports it
    bindings = doc.get("results", {}).get("bindings") if isinstance(doc, dict) else None
    if not isinstance(bindings, list):
        return raw
    if ask and doc.get("head", {}).get("vars") == ["__ASK_RETVAL"] and len(bindings) <= 1:
        # true is one row holding 1; false is no row at all
        value = bindings[0].get("__ASK_RETVAL", {}).get("value") if bindings else None
        return json.dumps({"head": {}, "boolean": value in ("1", "true")}).encode()
    changed = False
    for row in bindings:
        for term in row.values():
            kind = term.get("type")
            if kind == "bnode" and _BNODE_ID.search(term.get("value", "")):
                term["value"] = _BNODE_ID.sub("_", term["value"])
                changed = True
            elif kind == "typed-literal":  # the 2007 draft's name for a typed literal
                term["type"] = "literal"
                changed = True
            if term.get("datatype") == _XSD_BOOLEAN and term.get("value") in ("1", "0"):
                term["value"] = "true" if term["value"] == "1" else "false"
                changed = True
    return json.dumps(doc).encode() if changed else raw


@dataclass(frozen=True)
class _Check:
    """For the remote store: check and parse a query in a worker, evaluate nothing we hold."""

    query: str


@dataclass(frozen=True)
class _Checked:
    form: str
    from_default: tuple[str, ...]
    from_named: tuple[str, ...]


def _check(query: str) -> tuple[_Checked | _Failure, bytes]:
    """In a worker: our reader, then Oxigraph's parser on an empty store (its answers are lazy,
    so a SELECT or CONSTRUCT is only parsed); returns the text without FROM clauses."""
    try:
        inspection = inspect(query)
        result = ox.Store().query(query)
    except Refused as err:
        return _Failure(err.status, err.message), b""
    except SyntaxError as err:
        return _Failure(400, f"malformed query: {err}"), b""
    except (OSError, RuntimeError, ValueError, TypeError) as err:
        return _refusal(err), b""
    if isinstance(result, ox.QueryBoolean):
        form = "ASK"
    elif isinstance(result, ox.QuerySolutions):
        form = "SELECT"
    else:
        form = inspection.form if inspection.form in ("CONSTRUCT", "DESCRIBE") else "CONSTRUCT"
    checked = _Checked(form, inspection.from_default, inspection.from_named)
    return checked, strip_dataset_clauses(query).encode("utf-8")


class RemoteStore:
    """Every request is forwarded with SPARQLWrapper, with the dataset always made explicit."""

    def __init__(
        self,
        query_url: str,
        timeout: float = config.default("timeout"),
        *,
        workers: int = config.default("workers"),
        limits: Limits | None = None,
    ) -> None:
        self.query_url = query_url
        counts = self._graph_counts(timeout)
        self._counts = counts
        key = query_url + repr(sorted(counts.items()))
        self.build_id = "remote-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        # Queries are checked (and prescriptions run) in sandboxed workers here too.
        self._pool = WorkerPool(partial(_handle, None), workers, limits)

    @property
    def workers_replaced(self) -> int:
        return self._pool.replaced

    def _wrapper(self, query: str, timeout: float, accept: str, form: str) -> SPARQLWrapper:
        wrapper = SPARQLWrapper(self.query_url)
        wrapper.setMethod(POST)
        wrapper.setRequestMethod(URLENCODED)
        wrapper.setQuery(query)
        # SPARQLWrapper guesses the form with a regex that words in comments can fool (e.g.
        # "add..." read as ADD, sent as an update); we parsed the query, so we know.
        wrapper.queryType = form
        wrapper.setTimeout(max(1, math.ceil(timeout)))
        wrapper.addCustomHttpHeader("Accept", accept)
        # Content negotiation only: SPARQLWrapper would also send format=xml&output=xml, which
        # contradicts the Accept header (Virtuoso then answers 406).
        wrapper.setOnlyConneg(True)
        return wrapper

    def _fetch(self, wrapper: SPARQLWrapper) -> bytes:
        try:
            with wrapper.query().response as response:
                return response.read()
        except TimeoutError as err:
            raise QueryTimeout(f"the remote store did not answer in time: {err}") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError | socket.timeout):
                raise QueryTimeout("the remote store did not answer in time") from None
            raise StoreUnavailable(f"remote store unreachable: {err.reason}") from None
        except SPARQLWrapperException as err:
            status = 400 if "400" in str(err) or "QueryBadFormed" in type(err).__name__ else 502
            raise QueryFailed(f"remote store refused the query: {err}", status) from None

    def _graph_counts(self, timeout: float) -> dict[str, int]:
        query = "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"
        raw = self._fetch(
            self._wrapper(query, timeout, "application/sparql-results+json", "SELECT")
        )
        rows = solutions(
            ox.parse_query_results(normalize_json_results(raw), format=ox.QueryResultsFormat.JSON)
        )
        return {
            s["g"].value: int(s["n"].value)
            for s in rows
            if s["g"] is not None and not s["g"].value.startswith(ENGINE_GRAPHS)
        }

    def graph_counts(self) -> dict[str, int]:
        return dict(self._counts)

    def execute(self, job: QueryJob, timeout: float) -> Answer:
        started = time.monotonic()
        text = job.query
        if job.substitutions:  # SPARQL 1.1 Protocol has no binding: write the terms safely
            bound = {ox.Variable(k): v for k, v in job.substitutions.items()}
            text = inline(text, bound)
        if job.base_iri:  # the remote store would resolve against its own URL
            text = f"BASE <{job.base_iri}>\n{text}"
        checked, stripped = _outcome(self._pool, _Check(text), timeout)
        _raise_failure(checked)
        header = _Checked(checked["form"], tuple(checked["default"]), tuple(checked["named"]))
        graph = header.form in ("CONSTRUCT", "DESCRIBE")
        media = job.media_for(graph)
        if media is None:
            raise QueryFailed(job.refusals[graph], 406)
        accept = "application/n-triples" if graph else "application/sparql-results+json"
        remaining = max(0.1, timeout - (time.monotonic() - started))
        wrapper = self._wrapper(stripped.decode("utf-8"), remaining, accept, header.form)
        defaults, named = self._graphs(job.dataset, header)
        for iri in defaults or [EMPTY_GRAPH]:
            wrapper.addDefaultGraph(iri)
        for iri in named or [EMPTY_GRAPH]:
            wrapper.addNamedGraph(iri)
        raw = self._fetch(wrapper)
        try:
            if graph:
                result: object = (q.triple for q in ox.parse(raw, format=ox.RdfFormat.N_TRIPLES))
                return encode_result(result, media, job.row_cap)
            normalized = normalize_json_results(raw, ask=header.form == "ASK")

            def parsed() -> Any:
                return ox.parse_query_results(normalized, format=ox.QueryResultsFormat.JSON)

            return encode_result(parsed(), media, job.row_cap, parsed)
        except SyntaxError as err:
            raise StoreUnavailable(f"the remote store sent an unreadable answer: {err}") from None

    def _graphs(self, dataset: Dataset, checked: _Checked) -> tuple[list[str], list[str]]:
        """Default and named graphs to send: always explicit, only graphs the store holds."""
        held = list(self._counts)
        if dataset.is_default and (checked.from_default or checked.from_named):
            dataset = Dataset(  # the query's FROM clauses, restricted to graphs we hold
                tuple(dict.fromkeys(g for g in checked.from_default if g in held)),
                tuple(dict.fromkeys(g for g in checked.from_named if g in held)),
            )
        if dataset.is_default:
            return held, held
        return list(dataset.default or ()), list(dataset.named or ())

    def call(self, call: Call, timeout: float) -> tuple[Any, bytes]:
        return _outcome(self._pool, call, timeout)

    def close(self) -> None:
        self._pool.close()


def push(artifact: Path, store_url: str, timeout: float = 120.0) -> dict[str, int]:
    """PUT every named graph of the artifact to a Graph Store Protocol endpoint.

    PUT replaces each graph, so pushing twice leaves one copy. Returns triples per graph.
    """
    by_graph: dict[str, list[ox.Triple]] = defaultdict(list)
    for quad in parse_file(artifact):
        if isinstance(quad.graph_name, ox.NamedNode):
            by_graph[quad.graph_name.value].append(quad.triple)
    counts = {}
    for iri, triples in by_graph.items():
        body = ox.serialize(triples, format=GRAPH_FORMATS["application/n-triples"])
        separator = "&" if "?" in store_url else "?"
        request = urllib.request.Request(
            f"{store_url}{separator}graph={quote(iri, safe='')}",
            data=body,
            method="PUT",
            headers={"Content-Type": "application/n-triples"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status not in (200, 201, 204):
                raise StoreUnavailable(f"PUT {iri}: HTTP {response.status}")
        counts[iri] = len(triples)
    return counts
