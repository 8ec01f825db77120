"""Where queries are answered: one small interface, two implementations.

- `EmbeddedStore`: the build artifact in an in-memory pyoxigraph store, queried by forked
  worker processes so a query past its deadline is really stopped.
- `RemoteStore`: an existing SPARQL 1.1 store (Oxigraph server, Fuseki, GraphDB, Virtuoso)
  reached through SPARQLWrapper; `push` loads an artifact into it with the Graph Store Protocol.

Both receive only queries that already passed `service.store.safety`, and both produce answers
through `service.store.results`, so the same query gives the same bytes on either backend.
"""

from __future__ import annotations

import hashlib
import math
import socket
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import pyoxigraph as ox
from SPARQLWrapper import POST, URLENCODED, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import SPARQLWrapperException

from service.kb.sources import load_dataset, parse_file
from service.store.pool import PoolBusy, WorkerCrashed, WorkerPool, WorkerTimeout
from service.store.results import GRAPH_FORMATS, Answer, encode_result
from service.store.safety import Dataset, strip_dataset_clauses

# Stands for "an empty graph" when a dataset selects no graph we hold; a URN is never fetched.
EMPTY_GRAPH = "urn:cmpkg:empty-graph"


@dataclass(frozen=True)
class QueryJob:
    """A checked query, ready for a store."""

    query: str
    form: str  # SELECT, ASK, CONSTRUCT, DESCRIBE
    dataset: Dataset
    media_type: str
    row_cap: int
    # Values for `?name` variables, bound by the engine (SEP-0007 substitutions), never
    # pasted into the text; a store that cannot bind renders them with `queries.inline`.
    substitutions: Mapping[str, ox.NamedNode | ox.Literal] = field(default_factory=dict)


class StoreError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Failure:
    """An evaluation error, returned (not raised) so it crosses the worker pipe intact."""

    status: int
    message: str


def _evaluate(store: ox.Store, job: QueryJob) -> Answer | _Failure:
    kwargs: dict[str, object] = {}
    if job.dataset.is_default:
        kwargs["use_default_graph_as_union"] = True
    else:
        kwargs["default_graph"] = [ox.NamedNode(g) for g in job.dataset.default or ()]
        kwargs["named_graphs"] = [ox.NamedNode(g) for g in job.dataset.named or ()]
    if job.substitutions:
        kwargs["substitutions"] = {ox.Variable(k): v for k, v in job.substitutions.items()}
    try:
        result = store.query(job.query, **kwargs)
        return encode_result(result, job.media_type, job.row_cap)
    except SyntaxError as err:
        return _Failure(400, f"malformed query: {err}")
    except (OSError, ValueError, TypeError) as err:
        return _Failure(500, f"query evaluation failed: {err}")


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
    def __init__(self, store: ox.Store, build_id: str, workers: int = 2) -> None:
        self.build_id = build_id
        counts: dict[str, int] = defaultdict(int)
        for quad in store:
            if isinstance(quad.graph_name, ox.NamedNode):
                counts[quad.graph_name.value] += 1
        self._counts = dict(sorted(counts.items()))
        # Fork only now: every worker shares the loaded data copy-on-write.
        self._pool = WorkerPool(partial(_evaluate, store), workers)

    def graph_counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def workers_replaced(self) -> int:
        return self._pool.replaced

    def execute(self, job: QueryJob, timeout: float) -> Answer:
        try:
            outcome = self._pool.run(job, timeout)
        except WorkerTimeout:
            raise QueryTimeout(
                f"query stopped: it ran longer than the {timeout:g} s limit of this endpoint"
            ) from None
        except PoolBusy:
            raise QueryTimeout(f"every query worker stayed busy for {timeout:g} s") from None
        except WorkerCrashed as err:
            raise StoreError(str(err)) from None
        if isinstance(outcome, _Failure):
            error = QueryFailed(outcome.message)
            error.status = outcome.status
            raise error
        return outcome

    def close(self) -> None:
        self._pool.close()


class RemoteStore:
    """Every request is forwarded with SPARQLWrapper, with the dataset always made explicit."""

    def __init__(self, query_url: str, timeout: float = 10.0) -> None:
        self.query_url = query_url
        counts = self._graph_counts(timeout)
        self._counts = counts
        key = query_url + repr(sorted(counts.items()))
        self.build_id = "remote-" + hashlib.sha256(key.encode()).hexdigest()[:16]

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
            error = QueryFailed(f"remote store refused the query: {err}")
            error.status = status
            raise error from None

    def _graph_counts(self, timeout: float) -> dict[str, int]:
        query = "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"
        raw = self._fetch(
            self._wrapper(query, timeout, "application/sparql-results+json", "SELECT")
        )
        solutions = ox.parse_query_results(raw, format=ox.QueryResultsFormat.JSON)
        return {s["g"].value: int(s["n"].value) for s in solutions if s["g"] is not None}

    def graph_counts(self) -> dict[str, int]:
        return dict(self._counts)

    def execute(self, job: QueryJob, timeout: float) -> Answer:
        graph = job.form in ("CONSTRUCT", "DESCRIBE")
        accept = "application/n-triples" if graph else "application/sparql-results+json"
        text = job.query
        if job.substitutions:  # SPARQL 1.1 Protocol has no binding: write the terms safely
            from service.query.named import PreparedQuery, inline

            bound = {ox.Variable(k): v for k, v in job.substitutions.items()}
            text = inline(PreparedQuery(text, bound))
        wrapper = self._wrapper(strip_dataset_clauses(text), timeout, accept, job.form)
        held = list(self._counts)
        if job.dataset.is_default:
            defaults, named = held, held
        else:
            defaults, named = list(job.dataset.default or ()), list(job.dataset.named or ())
        for iri in defaults or [EMPTY_GRAPH]:
            wrapper.addDefaultGraph(iri)
        for iri in named or [EMPTY_GRAPH]:
            wrapper.addNamedGraph(iri)
        raw = self._fetch(wrapper)
        try:
            if graph:
                result: object = (q.triple for q in ox.parse(raw, format=ox.RdfFormat.N_TRIPLES))
            else:
                result = ox.parse_query_results(raw, format=ox.QueryResultsFormat.JSON)
            return encode_result(result, job.media_type, job.row_cap)
        except SyntaxError as err:
            raise StoreUnavailable(f"the remote store sent an unreadable answer: {err}") from None

    def close(self) -> None:
        pass


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
