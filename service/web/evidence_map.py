"""The evidence map as a server-rendered HTML table, one cell per body of evidence.

A real <table> (caption, <th scope>) so it works without JavaScript, prints, and reads well
in a screen reader: every cell carries its meaning as text ("benefit, moderate certainty,
indirect evidence" or "no evidence"); colour (conclusion) and its strength (certainty) are only
a second cue. Column headings are written vertically and cells are compact so that the whole
matrix fits a 1,400 px screen; each heading keeps its full label (and a title).
"""

from __future__ import annotations

from markupsafe import Markup, escape

from service.query.evidence import NO_EVIDENCE, Cell, EvidenceMap, Term
from service.query.sof import LEVEL_WORDS, circles

# Visible marks, each spelt out in the cell's text and in the legend.
INDIRECT_MARK = "ind."
SECONDARY_MARK = "†"
UNCONFIRMED_MARK = "*"


def css_class(name: str) -> str:
    return "cell-" + name.replace(" ", "-")


def _header(term: Term, scope: str) -> str:
    label = escape(term.label)
    if scope == "row":
        indent = f' style="padding-left:{0.3 + 0.8 * term.depth:.1f}em"'
        return (
            f'<th scope="row" class="depth-{term.depth}"{indent} data-term="{escape(term.key)}">'
            f"{label}</th>"
        )
    return (
        f'<th scope="col" title="{label}" data-term="{escape(term.key)}">'
        f'<span class="col-label">{label}</span></th>'
    )


def _cell(cell: Cell, row: Term, column: Term) -> str:
    context = (
        f'<span class="visually-hidden">: {escape(cell.text)}, for {escape(row.label)}, '
        f"{escape(column.label)}</span>"
    )
    if cell.body is None:
        # Gaps as visible as evidence: say it, do not leave the cell blank.
        return (
            f'<td class="{css_class(NO_EVIDENCE)}" data-conclusion="{NO_EVIDENCE}">'
            f'<span aria-hidden="true">–</span><span class="visually-hidden">{NO_EVIDENCE} for '
            f"{escape(row.label)}, {escape(column.label)}</span></td>"
        )
    marks = []
    if cell.directness == "indirect":
        marks.append(INDIRECT_MARK)
    if cell.secondary:
        marks.append(SECONDARY_MARK)
    if cell.unconfirmed:
        marks.append(UNCONFIRMED_MARK)
    shown = " ".join(marks)
    certainty = "not rated" if not cell.certainty_rank else LEVEL_WORDS[cell.certainty_rank]
    conclusion = escape(cell.conclusion.replace("-", " "))
    return (
        f'<td class="{css_class(cell.conclusion)} cert-{cell.certainty_rank}"'
        f' data-conclusion="{escape(cell.conclusion)}" data-directness="{escape(cell.directness)}"'
        f' data-marks="{escape(shown)}">'
        f'<a href="{escape(cell.href or "")}">'
        f'<span class="cell-conclusion" aria-hidden="true">{conclusion}</span>'
        f'<span class="cell-certainty" aria-hidden="true">{escape(certainty)}'
        f' <span class="circles">{circles(cell.certainty_rank)}</span></span>'
        + (f'<span class="cell-marks" aria-hidden="true">{escape(shown)}</span>' if shown else "")
        + f"{context}</a></td>"
    )


def render_table(model: EvidenceMap) -> Markup:
    """The matrix: conditions (rows, hierarchy order) x modalities with evidence (columns)."""
    caption = (
        f"Evidence map for {escape(model.outcome.label)}: the conclusion of each body of "
        "evidence per condition (rows) and exercise modality (columns); "
        f"{model.total_bodies} bodies of evidence in all."
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


def render_legend(model: EvidenceMap) -> Markup:
    """What the colours and marks mean, in words (the cells say it in words as well)."""
    lis = "".join(
        f'<li><span class="swatch {css_class(item["key"])}" aria-hidden="true"></span>'
        f"<strong>{escape(item['text'])}</strong>"
        + (f": {escape(item['definition'])}" if item["definition"] else "")
        + "</li>"
        for item in model.legend
    )
    marks = (
        f"<li><strong>{INDIRECT_MARK}</strong> indirect evidence: the body rests on claims about "
        "another population (a narrower or broader condition) or a narrower outcome</li>"
        f"<li><strong>{SECONDARY_MARK}</strong> secondary or unconfirmed evidence: the figures "
        "were not checked against the source itself</li>"
        f"<li><strong>{UNCONFIRMED_MARK}</strong> an unconfirmed claim is included in the body "
        "but does not count towards its conclusion</li>"
    )
    return Markup(
        f'<ul class="legend">{lis}{marks}<li>Certainty is the body\'s GRADE rating (high ⊕⊕⊕⊕ '
        "to very low ⊕◯◯◯; darker shades are higher); <em>not rated</em> when no source gives "
        "one.</li></ul>"
    )
