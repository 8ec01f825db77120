"""`cmpkg build` and `cmpkg explain`: thin wrappers over service.kb.build and service.kb.explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from service.kb.build import ARTIFACT_NAME, BuildFailed, build_dir, ensure_artifact
from service.kb.build import build as run_build


@click.command("build")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository root to build from (default: this checkout, or $CMPKG_ROOT).",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write cmpkg.nq and manifest.json (default: <root>/build).",
)
@click.option(
    "--owl-rl",
    "owl_rl_engine",
    type=click.Choice(["reasonable", "owlrl"]),
    default="reasonable",
    show_default=True,
    help="OWL 2 RL reasoner.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Stage lines on stderr (default: when stderr is a terminal).",
)
def build(
    root: Path | None, out_dir: Path | None, owl_rl_engine: str, progress: bool | None
) -> None:
    """Load, reason, validate and write the artifact + manifest (atomic, deterministic).

    On invalid data or an inconsistency the previous artifact is left untouched and the exit
    status is 1.
    """
    show = sys.stderr.isatty() if progress is None else progress
    try:
        manifest = run_build(root, out_dir, progress=show, owl_rl_engine=owl_rl_engine)
    except BuildFailed as err:
        click.echo(
            f"build failed at stage {err.stage}; previous artifact left untouched.", err=True
        )
        click.echo(err.report, err=True)
        sys.exit(1)
    target = build_dir(root, out_dir) / ARTIFACT_NAME
    counts = ", ".join(f"{g} {n}" for g, n in manifest.triples.items())
    click.echo(f"wrote {target} (build {manifest.build_id[:12]}): {counts}")
    click.echo(
        f"time {sum(manifest.timings.values()):.1f} s: "
        + ", ".join(f"{s} {t:.2f}" for s, t in manifest.timings.items())
    )


@click.command("explain")
@click.argument("iri")
@click.option(
    "--artifact",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Artifact to read (default: the current build, built if stale).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--depth", type=int, default=12, show_default=True, help="Maximum tree depth.")
def explain(iri: str, artifact: Path | None, fmt: str, depth: int) -> None:
    """Print how a derived statement was reached, down to asserted claims and their DOIs.

    IRI may be a full IRI or a CURIE, e.g.
    body:aerobic-exercise--physical-function--fibromyalgia (a body of evidence: its conclusion,
    certainty and each rating-down with its reason and claims)
    """
    from service.kb import explain as ex

    try:
        target = ex.expand(iri)
        path = artifact or ensure_artifact()
        tree = ex.explain(ex.load_artifact(path), target, max_depth=depth)
    except ex.UnknownIRI as err:
        click.echo(str(err), err=True)
        sys.exit(2)
    except BuildFailed as err:
        click.echo(f"no artifact: build failed at stage {err.stage}\n{err.report}", err=True)
        sys.exit(1)
    if fmt == "json":
        click.echo(json.dumps(tree.to_dict(), indent=2))
    else:
        click.echo(ex.render_text(tree))
