"""Named queries: the `.rq` files of `queries/`, their grlc decorators and BASIL parameters.

A file is one SPARQL query whose `#+` comment lines are grlc decorators, read as one YAML
document (`summary`, `description`, `tags`, `defaults`, `enumerate`, `pagination`, `method`).
Parameters follow the BASIL convention grlc also reads: `?_name_iri` is a required IRI,
`?__name_iri` an optional one, `?_name` a plain literal, `?_name_integer` (or `_decimal`,
`_boolean`) a typed literal.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import yaml

from service.kb.sources import PREFIXES, project_root
from service.query.terms import TermResolver, UnknownTerm
from service.store import binding

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


def _integer(text: str) -> str | None:
    return str(int(text)) if re.fullmatch(r"[+-]?\d{1,18}", text) else None


def _decimal(text: str) -> str | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or len(text) > 40:
        return None
    return format(number, "f")  # fixed-point: "1E+5" is a Python decimal, not an xsd:decimal


def _boolean(text: str) -> str | None:
    return text.lower() if text.lower() in ("true", "false") else None


# The canonical lexical form of a typed parameter value, or None when it is not one.
_LITERAL_PARSERS: dict[str, Callable[[str], str | None]] = {
    "integer": _integer,
    "decimal": _decimal,
    "boolean": _boolean,
}
_LITERAL_WORDS = {"integer": "an integer", "decimal": "a finite number", "boolean": "true or false"}


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
        parse = _LITERAL_PARSERS.get(self.kind)
        if parse is None:
            raise ValueError(f"parameter {self.name!r}: unsupported kind {self.kind!r}")
        lexical = parse(value.strip())
        if lexical is None:
            raise ValueError(f"parameter {self.name!r}: not {_LITERAL_WORDS[self.kind]}: {value!r}")
        return ox.Literal(lexical, datatype=ox.NamedNode(_LITERAL_KINDS[self.kind]))


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
    try:
        decorators = parse_decorators(text)
    except QueryFileError as err:
        raise QueryFileError(f"{path}: {err}") from None
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


def parse_decorators(text: str) -> dict[str, Any]:
    """The grlc `#+` lines read as the YAML document they are (grlc reads them with YAML too)."""
    block = "\n".join(line[2:] for line in text.splitlines() if line.startswith("#+"))
    try:
        decorators = yaml.safe_load(block)
    except yaml.YAMLError as err:
        # The usual slip: a plain value with ": " in it; YAML (and grlc) need it quoted.
        hint = " (quote a value that contains ': ' or starts with a YAML sign)"
        raise QueryFileError(f"the #+ decorators are not valid YAML{hint}: {err}") from None
    if decorators is None:
        return {}
    if not isinstance(decorators, dict):
        raise QueryFileError("the #+ decorators must be 'key: value' lines")
    return decorators


def _text(value: object) -> str:
    """A YAML scalar as the text a parameter value is written in (`true`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _as_dict(value: object) -> dict[str, str]:
    merged: dict[str, str] = {}
    for item in _as_list(value):
        if isinstance(item, dict):
            merged.update({str(k): _text(v) for k, v in item.items()})
    return merged


def _defaults(value: object, path: Path) -> dict[str, str]:
    merged: dict[str, str] = {}
    for item in _as_list(value):
        if not isinstance(item, dict):
            raise QueryFileError(f"{path}: defaults must be a list of 'name: value' items")
        merged.update({str(k): _text(v) for k, v in item.items()})
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


def _strip_comments_and_strings(text: str) -> str:
    """The query with comments, string literals and IRIs blanked, for lexical checks."""
    return "".join(piece if code else " " for code, piece in binding.segments(text))


def _form(text: str) -> str:
    match = re.search(
        r"\b(SELECT|ASK|CONSTRUCT|DESCRIBE)\b", _strip_comments_and_strings(text), re.IGNORECASE
    )
    return match.group(1).upper() if match else "SELECT"


def _check(query: NamedQuery) -> None:
    """Parse the query on an empty store with every parameter bound, as a run would."""
    probe: dict[ox.Variable, ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple] = {
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
    """The prepared query as one text, for stores that cannot bind values (remote SPARQL)."""
    return binding.inline(prepared.text, prepared.substitutions)
