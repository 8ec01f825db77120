"""Named queries: the `.rq` files of `queries/`, their grlc decorators and BASIL parameters.

A file is one SPARQL query whose leading `#+` comment lines are grlc decorators (`summary`,
`description`, `tags`, `defaults`, `enumerate`, `pagination`, `method`). Parameters follow the
BASIL convention grlc also reads: `?_name_iri` is a required IRI, `?__name_iri` an optional
one, `?_name` a plain literal, `?_name_integer` (or `_decimal`, `_boolean`) a typed literal.
A parameter with a default is optional too; the default is used when no value is given.

Values are never spliced into the text. They are resolved to terms (`service.query.terms`) and
handed to the engine as substitutions (SEP-0007), so the text the engine parses is the file's,
byte for byte, plus a `LIMIT`/`OFFSET` tail computed from the page number alone.
Oxigraph only substitutes variables a SELECT projects, so every parameter must be projected;
the files project them as `$_name` (the same variable), which grlc's textual rewrite of
`?_name` leaves alone. `load_queries` checks projection and syntax when the folder is read.
For a store that cannot bind values (a remote SPARQL endpoint), `inline` writes the resolved
terms into the text with Oxigraph's serialiser instead.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyoxigraph as ox

from service.kb.sources import PREFIXES, project_root
from service.query.terms import TermResolver, UnknownTerm

__all__ = [
    "NamedQuery",
    "Parameter",
    "PreparedQuery",
    "QueryFileError",
    "UnknownTerm",
    "fill_enums",
    "inline",
    "load_queries",
    "prepare",
    "resolver_for",
    "run_query",
]

XSD = PREFIXES["xsd"]
CMP = PREFIXES["cmp"]

# The kind of term an IRI parameter expects, from the last word of its name, so "disability"
# typed for a pathology finds path:disability and not the outcome of the same name.
PARAMETER_CLASSES: dict[str, str] = {
    "condition": CMP + "Condition",
    "modality": CMP + "ExerciseModality",
    "intervention": CMP + "ExerciseModality",
    "outcome": CMP + "Outcome",
    "pathology": CMP + "SecondaryPathology",
    "principle": CMP + "PrescriptionPrinciple",
    "mechanism": CMP + "Mechanism",
    "phenomenon": CMP + "Phenomenon",
    "site": CMP + "AnatomicalSite",
    "comparator": CMP + "Comparator",
    "certainty": CMP + "CertaintyLevel",
    "source": CMP + "Source",
    "review": CMP + "Source",
    "guideline": CMP + "Guideline",
    "overview": CMP + "OverviewOfReviews",
    "claim": CMP + "EvidenceClaim",
    "body": CMP + "EvidenceBody",
}

_LITERAL_KINDS = {
    "integer": XSD + "integer",
    "decimal": XSD + "decimal",
    "boolean": XSD + "boolean",
}
# grlc's reading: `?_name`, `?__name` (optional), `?_name_type`; a name has no underscore.
# `$_name` is the same variable: queries project parameters as `$_name_iri` because grlc
# rewrites `?_name_iri` into the IRI itself, which is not allowed in a SELECT clause.
_PARAM = re.compile(r"[?$](__?)([A-Za-z0-9]+)(?:_([A-Za-z0-9]+))?(?![A-Za-z0-9_])")
_LIMIT = re.compile(r"\b(LIMIT|OFFSET)\b", re.IGNORECASE)


class QueryFileError(ValueError):
    """A `.rq` file that cannot serve as a named query (bad decorator, unprojected parameter)."""


@dataclass
class Parameter:
    name: str  # the API name: "condition" for ?_condition_iri
    kind: str  # "iri" | "literal" | "integer" | "decimal" | "boolean"
    required: bool
    default: str | None
    enum: list[str]
    description: str
    variable: str = ""  # the SPARQL variable without "?", e.g. "_condition_iri"
    term_class: str | None = None  # for "iri": the class a value must belong to
    language: str | None = None  # for "literal": a language tag from a `?_name_en` suffix

    def to_term(self, value: str, resolver: TermResolver) -> ox.NamedNode | ox.Literal:
        """The RDF term for a value; UnknownTerm or ValueError when it cannot be one."""
        if not isinstance(value, str):
            raise ValueError(f"parameter {self.name!r}: value must be a string")
        if self.kind == "iri":
            return ox.NamedNode(resolver.resolve(value, self.term_class, self.name))
        if self.kind == "literal":
            return ox.Literal(value, language=self.language) if self.language else ox.Literal(value)
        text = value.strip()
        if self.kind == "integer":
            if not re.fullmatch(r"[+-]?\d{1,18}", text):
                raise ValueError(f"parameter {self.name!r}: not an integer: {value!r}")
            return ox.Literal(str(int(text)), datatype=ox.NamedNode(_LITERAL_KINDS["integer"]))
        if self.kind == "decimal":
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise ValueError(f"parameter {self.name!r}: not a number: {value!r}") from None
            if not number.is_finite() or len(text) > 40:
                raise ValueError(f"parameter {self.name!r}: not a finite number: {value!r}")
            # fixed-point: "1E+5" is a Python decimal but not an xsd:decimal
            return ox.Literal(format(number, "f"), datatype=ox.NamedNode(_LITERAL_KINDS["decimal"]))
        if self.kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"parameter {self.name!r}: not true or false: {value!r}")
            return ox.Literal(text.lower(), datatype=ox.NamedNode(_LITERAL_KINDS["boolean"]))
        raise ValueError(f"parameter {self.name!r}: unsupported kind {self.kind!r}")


@dataclass
class NamedQuery:
    name: str
    path: Path
    summary: str
    description: str
    tags: list[str]
    parameters: list[Parameter]
    pagination: int | None
    text: str
    method: str = "GET"
    form: str = "SELECT"
    enumerate: list[str] = field(default_factory=list)  # parameters grlc offers choices for

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True)
class PreparedQuery:
    """What goes to the engine: the file's text (plus a page tail) and the bound values."""

    text: str
    substitutions: dict[ox.Variable, ox.NamedNode | ox.Literal] = field(default_factory=dict)


# -- reading files ----------------------------------------------------------------------------


def queries_folder() -> Path:
    return project_root() / "queries"


def load_queries(folder: Path | None = None) -> dict[str, NamedQuery]:
    """Every `.rq` file of the folder by file stem, checked so a broken file fails early."""
    folder = Path(folder) if folder is not None else queries_folder()
    queries = {}
    for path in sorted(folder.glob("*.rq")):
        query = read_query(path)
        _check(query)
        queries[query.name] = query
    return queries


def read_query(path: Path) -> NamedQuery:
    text = path.read_text(encoding="utf-8")
    decorators = parse_decorators(text)
    defaults = _defaults(decorators.get("defaults"), path)
    enumerate_ = [str(x) for x in _as_list(decorators.get("enumerate"))]
    parameters = _parameters(text, defaults, _as_dict(decorators.get("params")))
    unknown = (set(defaults) | set(enumerate_)) - {p.name for p in parameters}
    if unknown:
        raise QueryFileError(f"{path}: decorators name unknown parameters {sorted(unknown)}")
    pagination = decorators.get("pagination")
    if pagination is not None:
        try:
            pagination = int(pagination)
        except (TypeError, ValueError):
            raise QueryFileError(f"{path}: pagination must be an integer") from None
        if pagination < 1:
            raise QueryFileError(f"{path}: pagination must be positive")
        if _LIMIT.search(_strip_comments_and_strings(text)):
            raise QueryFileError(f"{path}: a paginated query must not have LIMIT or OFFSET")
    return NamedQuery(
        name=path.stem,
        path=path,
        summary=str(decorators.get("summary", "")).strip(),
        description=str(decorators.get("description", "")).strip(),
        tags=[str(t) for t in _as_list(decorators.get("tags"))],
        parameters=parameters,
        pagination=pagination,
        text=text,
        method=str(decorators.get("method", "GET")).upper(),
        form=_form(text),
        enumerate=enumerate_,
    )


def parse_decorators(text: str) -> dict[str, object]:
    """The grlc `#+` lines as a dict: scalars, lists, and lists of one-key maps.

    A small reader for the YAML subset grlc files use, so the package needs no YAML library.
    """
    result: dict[str, object] = {}
    key: str | None = None
    for raw in text.splitlines():
        if not raw.startswith("#+"):
            continue
        line = raw[2:].rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("- ") or stripped == "-":
            if key is None:
                raise QueryFileError(f"list item without a key: {raw!r}")
            item = stripped[1:].strip()
            entry: object = _scalar(item)
            if re.match(r"^[A-Za-z_][\w-]*:\s", item + " ") and not re.match(r"^\w+://", item):
                k, _, v = item.partition(":")
                entry = {k.strip(): _scalar(v.strip())}
            current = result.get(key)
            if not isinstance(current, list):
                current = []
                result[key] = current
            current.append(entry)
            continue
        k, sep, v = stripped.partition(":")
        if not sep:
            raise QueryFileError(f"decorator without a colon: {raw!r}")
        key = k.strip()
        result[key] = _scalar(v.strip()) if v.strip() else []
    return result


def _scalar(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _as_list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        return [_scalar(v.strip()) for v in value[1:-1].split(",") if v.strip()]
    return [value]


def _as_dict(value: object) -> dict[str, str]:
    merged: dict[str, str] = {}
    for item in _as_list(value):
        if isinstance(item, dict):
            merged.update({str(k): str(v) for k, v in item.items()})
    return merged


def _defaults(value: object, path: Path) -> dict[str, str]:
    merged: dict[str, str] = {}
    for item in _as_list(value):
        if not isinstance(item, dict):
            raise QueryFileError(f"{path}: defaults must be a list of 'name: value' items")
        merged.update({str(k): str(v) for k, v in item.items()})
    return merged


def _parameters(
    text: str, defaults: Mapping[str, str], descriptions: Mapping[str, str]
) -> list[Parameter]:
    body = _strip_comments_and_strings(text)
    found: dict[str, Parameter] = {}
    for underscores, name, suffix in _PARAM.findall(body):
        variable = underscores + name + (f"_{suffix}" if suffix else "")
        kind, language = _kind(suffix)
        if name in found:
            if found[name].variable != variable:
                raise QueryFileError(f"parameter {name!r} appears as two variables")
            continue
        optional = underscores == "__" or name in defaults
        found[name] = Parameter(
            name=name,
            kind=kind,
            required=not optional,
            default=defaults.get(name),
            enum=[],
            description=descriptions.get(name, ""),
            variable=variable,
            term_class=PARAMETER_CLASSES.get(_last_word(name)) if kind == "iri" else None,
            language=language,
        )
    return list(found.values())


def _kind(suffix: str) -> tuple[str, str | None]:
    """grlc's reading of a variable's suffix: iri, an XSD datatype, a language tag, or none."""
    if suffix == "iri":
        return "iri", None
    if suffix in _LITERAL_KINDS:
        return suffix, None
    if re.fullmatch(r"[a-z]{2}", suffix):
        return "literal", suffix
    return "literal", None


def _last_word(name: str) -> str:
    """`minCertainty` -> `certainty`: the class of a camel-case name comes from its last word."""
    return re.split(r"(?=[A-Z])", name)[-1].lower()


def _segments(text: str) -> list[tuple[bool, str]]:
    """The query cut into (is_code, piece): comments, strings and IRIs are not code."""
    pieces: list[tuple[bool, str]] = []
    code_start, i, n = 0, 0, len(text)

    def cut(end: int) -> None:
        if code_start < i:
            pieces.append((True, text[code_start:i]))
        pieces.append((False, text[i:end]))

    while i < n:
        c = text[i]
        end = -1
        if c == "#":
            j = text.find("\n", i)
            end = n if j < 0 else j
        elif c == "<":
            # an IRI reference: kept whole so a '#' fragment is not read as a comment
            j = i + 1
            while j < n and text[j] not in '<>"{}|^`\\ \t\r\n':
                j += 1
            if j < n and text[j] == ">":
                end = j + 1
        elif c in "'\"":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if text[j] == "\\" else 1
            end = min(n, j + len(quote))
        if end < 0:
            i += 1
            continue
        cut(end)
        code_start = i = end
    if code_start < n:
        pieces.append((True, text[code_start:]))
    return pieces


def _strip_comments_and_strings(text: str) -> str:
    """The query with comments, string literals and IRIs blanked, for lexical checks."""
    return "".join(piece if code else " " for code, piece in _segments(text))


def _form(text: str) -> str:
    match = re.search(
        r"\b(SELECT|ASK|CONSTRUCT|DESCRIBE)\b", _strip_comments_and_strings(text), re.IGNORECASE
    )
    return match.group(1).upper() if match else "SELECT"


def _check(query: NamedQuery) -> None:
    """Parse the query on an empty store with every parameter bound, as a run would."""
    probe = {
        ox.Variable(p.variable): (
            ox.NamedNode("urn:cmpkg:probe") if p.kind == "iri" else _probe_literal(p.kind)
        )
        for p in query.parameters
    }
    try:
        ox.Store().query(query.text, substitutions=probe)
    except SyntaxError as err:
        raise QueryFileError(f"{query.path}: {err}") from None
    except RuntimeError as err:
        # e.g. a parameter the SELECT does not project: Oxigraph would refuse to bind it
        raise QueryFileError(f"{query.path}: {err}") from None


def _probe_literal(kind: str) -> ox.Literal:
    samples = {"integer": "1", "decimal": "1.0", "boolean": "true"}
    if kind in samples:
        return ox.Literal(samples[kind], datatype=ox.NamedNode(_LITERAL_KINDS[kind]))
    return ox.Literal("probe")


def fill_enums(queries: Mapping[str, NamedQuery], resolver: TermResolver) -> None:
    """Give each `#+ enumerate:` parameter the IRIs of its kind (grlc asks the endpoint)."""
    for query in queries.values():
        for p in query.parameters:
            if p.name in query.enumerate and p.kind == "iri":
                p.enum = resolver.choices(p.term_class)


# -- running ----------------------------------------------------------------------------------


def prepare(
    query: NamedQuery,
    values: Mapping[str, str],
    resolver: TermResolver,
    page: int = 1,
) -> PreparedQuery:
    """Resolve values (UnknownTerm / ValueError on bad ones) and compute the text to run."""
    names = {p.name for p in query.parameters}
    extra = set(values) - names
    if extra:
        raise ValueError(f"unknown parameters {sorted(extra)}; this query takes {sorted(names)}")
    substitutions: dict[ox.Variable, ox.NamedNode | ox.Literal] = {}
    for p in query.parameters:
        value = values.get(p.name)
        if value is None or (isinstance(value, str) and not value.strip() and not p.required):
            value = p.default
        if value is None:
            if p.required:
                raise ValueError(f"missing required parameter {p.name!r}")
            continue
        substitutions[ox.Variable(p.variable)] = p.to_term(value, resolver)
    return PreparedQuery(query.text + page_tail(query, page), substitutions)


def page_tail(query: NamedQuery, page: int) -> str:
    """`LIMIT`/`OFFSET` for a page of a paginated query (the only text ever added)."""
    if query.pagination is None:
        if page != 1:
            raise ValueError(f"query {query.name!r} is not paginated")
        return ""
    if not isinstance(page, int) or isinstance(page, bool) or page < 1 or page > 10**9:
        raise ValueError(f"page must be a positive integer, not {page!r}")
    return f"\nLIMIT {query.pagination} OFFSET {(page - 1) * query.pagination}\n"


def inline(prepared: PreparedQuery) -> str:
    """The prepared query as one text, for stores that cannot bind values (remote SPARQL).

    grlc's way: each `?_name` outside comments, strings and IRIs becomes the RDF term, written
    by Oxigraph's serialiser (IRIs are terms we hold, literals are escaped), so no value can
    close a string or an IRI. The `$_name` projections stay variables and come back unbound.
    """
    by_name = {f"?{v.value}": str(term) for v, term in prepared.substitutions.items()}
    if not by_name:
        return prepared.text
    pattern = re.compile(r"\?__?[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?(?![A-Za-z0-9_])")
    return "".join(
        pattern.sub(lambda m: by_name.get(m.group(0), m.group(0)), piece) if code else piece
        for code, piece in _segments(prepared.text)
    )


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
) -> ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples:
    """Run a named query. By default over the union of all graphs; `graphs` picks some."""
    prepared = prepare(query, values, resolver or resolver_for(store), page)
    if graphs is None:
        return store.query(
            prepared.text, use_default_graph_as_union=True, substitutions=prepared.substitutions
        )
    return store.query(
        prepared.text, default_graph=list(graphs), substitutions=prepared.substitutions
    )
