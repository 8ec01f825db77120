"""The `cmpkg` command line: thin wrappers that parse flags, call the library, set exit codes."""

from __future__ import annotations

import click

from service import __version__
from service.cli.building import build, explain
from service.cli.exporting import export
from service.cli.prescribing import prescribe
from service.cli.serving import push, serve
from service.cli.validating import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cmpkg")
def main() -> None:
    """cmp-kg: exercise for chronic musculoskeletal pain, as a validated knowledge graph.

    Decision support for clinicians and guideline authors; not advice to patients.
    """


for command in (build, explain, export, prescribe, push, serve, validate):
    main.add_command(command)
