"""`cmpkg validate`: SHACL + HermiT over the knowledge base, optionally with draft files on top."""

from __future__ import annotations

from pathlib import Path

import click

from service.kb.hermit import HermitError
from service.kb.sources import RDFSyntaxError, project_root
from service.kb.validation import Finding, ValidationReport, display_path, validate_project

EXIT_UNREADABLE = 2
EXIT_CANNOT_CHECK = 3  # the OWL check itself could not run (no Java, HermiT failure)


def _syntax_report(err: RDFSyntaxError) -> ValidationReport:
    shown = display_path(Path(err.path), project_root())
    where = f"line {err.line}" if err.line is not None else "unknown line"
    if err.line is not None and err.column is not None:
        where += f", column {err.column}"
    finding = Finding(
        severity="Violation",
        focus_node=shown,
        focus_label=None,
        path=None,
        value=None,
        message=f"Cannot read this file ({where}): {err.message}",
        shape=None,
        constraint=None,
        file=f"{shown}:{err.line}" if err.line is not None else shown,
        check="syntax",
    )
    return ValidationReport(findings=[finding])


@click.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "turtle"]),
    default="text",
    show_default=True,
    help="Report format: text for curators, json for tools, turtle for a sh:ValidationReport.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
@click.option("--no-reasoner", is_flag=True, help="Skip the HermiT OWL DL consistency check.")
@click.option(
    "--whole",
    is_flag=True,
    help="With FILES: run every shape on the whole knowledge base, not only on what FILES touch.",
)
def validate(
    files: tuple[Path, ...], fmt: str, strict: bool, no_reasoner: bool, whole: bool
) -> None:
    """Check ontology/ + data/ (+ FILES, e.g. a draft) against shapes/ and with HermiT.

    With FILES, SHACL checks the nodes they describe and the nodes pointing at those, against
    the whole knowledge base (every build checks the knowledge base itself); --whole checks
    every node.

    Exit codes: 0 valid, 1 violations (or warnings with --strict), 2 unreadable input.
    """
    try:
        report = validate_project(extra_files=files, reasoner=not no_reasoner, whole=whole)
    except RDFSyntaxError as err:
        click.echo(_syntax_report(err).render(fmt), nl=False)
        if fmt != "text":
            click.echo(f"cmpkg validate: {err}", err=True)
        raise SystemExit(EXIT_UNREADABLE) from None
    except HermitError as err:  # no Java, or HermiT itself failed
        click.echo(f"cmpkg validate: {err}", err=True)
        raise SystemExit(EXIT_CANNOT_CHECK) from None
    click.echo(report.render(fmt), nl=False)
    raise SystemExit(report.exit_code(strict=strict))
