"""`cmpkg prescribe FILE`: a presentation (JSON or JSON-LD) -> ranked, explained answer."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.prescribe.presentation import InvalidPresentation


@click.command("prescribe")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--artifact",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Built artifact to reason over (default: the current build, built first if stale).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "summary"]),
    default="json",
    show_default=True,
    help="The full JSON-LD answer, or only its plain-language summary.",
)
def prescribe(file: Path, artifact: Path | None, fmt: str) -> None:
    """Rank exercise options for the presentation in FILE ('-' for stdin), with explanations.

    Decision support for clinicians and guideline authors; not advice to patients.
    Exit codes: 0 answered, 2 invalid presentation, 3 knowledge graph unavailable.
    """
    from service.kb.build import BuildFailed
    from service.prescribe.engine import error_document, knowledge_base, prescribe_json, render

    raw = sys.stdin.buffer.read() if str(file) == "-" else _read(file)
    try:
        kb = knowledge_base(artifact)
    except BuildFailed as err:
        click.echo(f"cannot build the knowledge graph: {err}", err=True)
        sys.exit(3)
    try:
        document = prescribe_json(raw, kb)
    except InvalidPresentation as err:
        sys.stdout.buffer.write(render(error_document(err)))
        click.echo(f"invalid presentation: {err.message}", err=True)
        sys.exit(2)
    if fmt == "summary":
        click.echo(document["summary"])
    else:
        sys.stdout.buffer.write(render(document))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise click.BadParameter(f"cannot read {path}: {err.strerror}", param_hint="FILE") from None


__all__ = ["prescribe"]
