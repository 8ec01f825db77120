"""The `cmpkg` command line: thin wrappers that parse flags, call the library, set exit codes."""

from __future__ import annotations

import click

from service import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cmpkg")
def main() -> None:
    """cmp-kg: exercise for chronic musculoskeletal pain, as a validated knowledge graph.

    Decision support for clinicians and guideline authors; not advice to patients.
    """


# Subcommands register below, one import per module (kept alphabetical).
