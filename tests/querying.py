"""Running named queries straight on a pyoxigraph store, for tests only.

The service runs them through a `Store` (worker processes, timeouts, caps); tests that check
what a query answers need none of that, so these helpers live here rather than in
service.query.named.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import pyoxigraph as ox

from service.query.named import NamedQuery, prepare
from service.query.terms import TermResolver

# Resolvers by store: building one walks every label, so it is done once per store. Stores
# cannot be weakly referenced, so the cache is small and keeps its stores alive.
_RESOLVERS: OrderedDict[int, tuple[ox.Store, TermResolver]] = OrderedDict()


def resolver_for(store: ox.Store) -> TermResolver:
    key = id(store)
    cached = _RESOLVERS.get(key)
    if cached is not None and cached[0] is store:
        _RESOLVERS.move_to_end(key)
        return cached[1]
    resolver = TermResolver.from_store(store)
    _RESOLVERS[key] = (store, resolver)
    while len(_RESOLVERS) > 4:
        _RESOLVERS.popitem(last=False)
    return resolver


def run_query(
    store: ox.Store,
    query: NamedQuery,
    values: Mapping[str, str],
    page: int = 1,
    *,
    resolver: TermResolver | None = None,
    graphs: list[ox.NamedNode] | None = None,
) -> ox.QuerySolutions:
    """Run a named SELECT query. By default over the union of all graphs; `graphs` picks some."""
    prepared = prepare(query, values, resolver or resolver_for(store), page)
    substitutions: dict[ox.Variable, ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple] = dict(
        prepared.substitutions
    )
    if graphs is None:
        result = store.query(
            prepared.text, use_default_graph_as_union=True, substitutions=substitutions
        )
    else:
        result = store.query(prepared.text, default_graph=list(graphs), substitutions=substitutions)
    assert isinstance(result, ox.QuerySolutions), f"{query.name} is not a SELECT query"
    return result
