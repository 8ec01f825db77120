"""The evidence map as a server-rendered HTML table.

A real <table> (caption, <th scope>) so it works without JavaScript, prints, and reads well
in a screen reader: every cell carries its meaning as text ("2 claims, benefit, moderate" or
"no evidence"); colour (direction) and its strength (best certainty) are only a second cue.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from service.query.evidence import Cell, EvidenceMap, Term

# GRADE's usual circles, hidden from screen readers (the level is also written out).
_CIRCLES = {4: "⊕⊕⊕⊕", 3: "⊕⊕⊕◯", 2: "⊕⊕◯◯", 1: "⊕◯◯◯"}


def css_class(name: str) -> str:
    return "cell-" + name.replace(" ", "-")


def _header(term: Term, scope: str) -> str:
    indent = f' style="padding-left:{0.4 + 1.1 * term.depth:.1f}em"' if scope == "row" else ""
    return (
        f'<th scope="{scope}" class="depth-{term.depth}"{indent} data-term="{escape(term.key)}">'
        f"{escape(term.label)}</th>"
    )


def _cell(cell: Cell, row: Term, column: Term) -> str:
    context = (
        f'<span class="visually-hidden"> for {escape(row.label)}, {escape(column.label)}</span>'
    )
    if not cell.count:
        # Gaps as visible as evidence: say it, do not leave the cell blank.
        return (
            f'<td class="{css_class(cell.direction_class)}" data-count="0">'
            f'<span class="cell-count">no evidence</span>{context}</td>'
        )
    noun = "claim" if cell.count == 1 else "claims"
    circles = _CIRCLES.get(cell.best_rank, "")
    certainty = escape(cell.best_certainty or "not reported")
    return (
        f'<td class="{css_class(cell.direction_class)} cert-{cell.best_rank}"'
        f' data-count="{cell.count}">'
        f'<a href="{escape(cell.href or "")}">'
        f'<span class="cell-count">{cell.count} {noun}</span>'
        f'<span class="cell-direction">{escape(cell.direction_class)}</span>'
        f'<span class="cell-certainty">{certainty}'
        f'<span class="circles" aria-hidden="true"> {circles}</span></span>'
        f"{context}</a></td>"
    )


def render_table(model: EvidenceMap) -> Markup:
    """The matrix: conditions (rows, hierarchy order) x modalities (columns)."""
    caption = (
        f"Evidence map for {escape(model.outcome.label)}: evidence claims per condition (rows) "
        f"and exercise modality (columns); {model.total_claims} claims in all."
    )
    head = "".join(_header(m, "col") for m in model.modalities)
    body = []
    for row in model.rows:
        cells = "".join(
            _cell(cell, row.condition, column)
            for cell, column in zip(row.cells, model.modalities, strict=True)
        )
        body.append(f"<tr>{_header(row.condition, 'row')}{cells}</tr>")
    return Markup(
        '<table class="evidence-map" id="evidence-map">'
        f"<caption>{caption}</caption>"
        f'<thead><tr><td class="corner">condition \\ modality</td>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def render_legend() -> Markup:
    """What the colours mean, in words (the cells say it in words as well)."""
    items = [
        ("benefit", "at least one claim with a statistically significant benefit"),
        ("harm", "at least one claim with a statistically significant harm"),
        ("mixed", "significant benefit and significant harm in different claims"),
        ("inconclusive", "claims, but none with a statistically significant effect"),
        ("no evidence", "no claim found: a gap in the evidence"),
    ]
    lis = "".join(
        f'<li><span class="swatch {css_class(name)}" aria-hidden="true"></span>'
        f"<strong>{escape(name)}</strong>: {escape(text)}</li>"
        for name, text in items
    )
    return Markup(
        f'<ul class="legend">{lis}<li>Darker shades mean higher best certainty '
        "(GRADE high ⊕⊕⊕⊕ to very low ⊕◯◯◯).</li></ul>"
    )
