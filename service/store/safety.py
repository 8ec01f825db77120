"""What the server process decides about a query without reading it: which graphs it may see.

The query text itself is never parsed here: it goes to a sandboxed worker, where
`service.store.query_check` refuses SERVICE, LOAD, updates and deep nesting and Oxigraph's parser
decides the rest (see service.store.backends). The protocol's graph parameters only ever
select graphs we hold: a graph we do not hold is left out (so it is empty), never fetched.
The query's own FROM / FROM NAMED are applied in the worker, where they can only name
graphs of our store.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.store.backends import Dataset

__all__ = ["Dataset", "select_dataset"]


def select_dataset(
    default_graph_uris: Iterable[str],
    named_graph_uris: Iterable[str],
    held: Iterable[str],
) -> Dataset:
    """The protocol's graph parameters, which override FROM / FROM NAMED (SPARQL 1.1 Protocol
    2.1.4); without any, the query's own dataset (or the service default) applies."""
    default_graph_uris, named_graph_uris = list(default_graph_uris), list(named_graph_uris)
    if not default_graph_uris and not named_graph_uris:
        return Dataset()
    kept = set(held)
    return Dataset(
        tuple(dict.fromkeys(g for g in default_graph_uris if g in kept)),
        tuple(dict.fromkeys(g for g in named_graph_uris if g in kept)),
    )
