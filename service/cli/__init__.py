"""The `cmpkg` command line: thin wrappers that parse flags, call the library, set exit codes."""

from __future__ import annotations

import importlib

import click

from service import __version__

# Each command's module is imported only when that command runs (click's "lazily loading
# subcommands" pattern): importing all of them took 1.4 s before any command started, and a
# command pays only for what it uses (`cmpkg export` never needs pySHACL or the web stack).
COMMANDS = {
    "build": "service.cli.building:build",
    "explain": "service.cli.building:explain",
    "export": "service.cli.exporting:export",
    "prescribe": "service.cli.prescribing:prescribe",
    "push": "service.cli.serving:push",
    "serve": "service.cli.serving:serve",
    "validate": "service.cli.validating:validate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, name = target.split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command), target
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cmpkg")
def main() -> None:
    """cmp-kg: exercise for chronic musculoskeletal pain, as a validated knowledge graph.

    Decision support for clinicians and guideline authors; not advice to patients.
    """
