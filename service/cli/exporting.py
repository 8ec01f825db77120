"""`cmpkg export`: the built knowledge graph as JSON-LD, Turtle, N-Quads or FHIR R5."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.kb.sources import RDFSyntaxError, parse_file
from service.query.export import FORMATS, export_artifact


@click.command("export")
@click.option(
    "--format", "fmt", type=click.Choice([*FORMATS, "fhir"]), default="jsonld", show_default=True,
    help="jsonld and ttl: the union of the graphs as triples; nq: the named graphs kept; "
    "fhir: the evidence as a FHIR R5 Bundle (docs/FHIR.md).",
)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")  # fmt: skip
@click.option("--artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A build artifact (N-Quads/TriG); default: the current build, "
              "built first when missing.")  # fmt: skip
def export(fmt: str, output: Path | None, artifact: Path | None) -> None:
    """Write the whole knowledge graph in one file."""
    if artifact is None:
        from service.kb.build import BuildFailed, ensure_artifact

        try:
            artifact = Path(ensure_artifact())
        except BuildFailed as err:
            raise click.ClickException(f"no artifact to export: the build failed: {err}") from None
    try:
        if fmt == "fhir":  # the FHIR layer sits above the query layer's RDF exports
            from service.fhir.bundle import export_quads

            data = export_quads(parse_file(artifact))
        else:
            data = export_artifact(artifact, fmt)
    except RDFSyntaxError as err:
        raise click.ClickException(str(err)) from None
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(output)  # never leave a half-written export behind
    click.echo(f"wrote {output} ({len(data)} bytes, {fmt})", err=True)
