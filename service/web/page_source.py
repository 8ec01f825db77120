"""What the pages read: one data-access object per app, installed by the app factory.

The pages blueprint never talks to a store itself; it asks the `PageSource` in
`app.extensions["cmpkg.pages"]`. The app factory installs `served()`, which reads whatever
build is served at the moment of the request (so a hot swap is seen at once); the page tests
install `fixed(...)` over their fixture store, so both take the same path through the pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from service.query.terms import TermResolver

Rows = list[dict[str, str | None]]
EXTENSION = "cmpkg.pages"


@dataclass(frozen=True)
class PageSource:
    """Callables, not values: the served build can change between two requests."""

    select: Callable[[str], Rows]  # SELECT text -> plain rows (variable -> IRI or lexical form)
    manifest: Callable[[], Mapping[str, Any]]  # build_id, created (optional), graphs
    queries: Callable[[], Mapping[str, Any]]  # name -> service.query.named.NamedQuery
    run_query: Callable[[str, Mapping[str, str]], Rows]  # LookupError / UnknownTerm / ValueError
    resolver: Callable[[], TermResolver]  # the one term index the API resolves values with


def served() -> PageSource:
    """The served store, through the same functions the API answers with."""
    from service.web import api

    return PageSource(
        select=api.select_rows,
        manifest=_served_manifest,
        queries=lambda: api.catalog().queries,
        run_query=api.run_named,
        resolver=lambda: api.catalog().resolver,
    )


def fixed(
    select: Callable[[str], Rows],
    manifest: Mapping[str, Any],
    queries: Mapping[str, Any],
    run_query: Callable[[str, Mapping[str, str]], Rows],
    resolver: TermResolver,
) -> PageSource:
    """A source over one unchanging store (an embedded fixture, a benchmark)."""
    return PageSource(
        select=select,
        manifest=lambda: manifest,
        queries=lambda: queries,
        run_query=run_query,
        resolver=lambda: resolver,
    )


def install(app: Flask, source: PageSource) -> None:
    app.extensions[EXTENSION] = source


def current_for(app: Flask) -> PageSource:
    source = app.extensions.get(EXTENSION)
    if source is None:  # a wiring mistake, not a request error: say what is missing
        raise RuntimeError("the pages need a PageSource: call service.web.page_source.install")
    return source


def current() -> PageSource:
    """The source of the app handling this request."""
    return current_for(current_app)


def _served_manifest() -> Mapping[str, Any]:
    from service.web import state

    store = state(current_app).store
    return {"build_id": store.build_id, "graphs": store.graph_counts()}
