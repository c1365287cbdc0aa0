"""`edgeops data`: the bundled example data set and data versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeops.cli.common import console

data_app = typer.Typer(help="Data sets: the bundled example, validation, versions.", no_args_is_help=True)


@data_app.command("example")
def data_example(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write: one subfolder per class, PNG files.")],
) -> None:
    """Write scikit-learn's bundled digits (1,797 real 8x8 images) as an image folder."""
    from components.data import write_example_digits

    n = write_example_digits(out_dir)
    console.print(f"wrote {n} images to {out_dir}")


@data_app.command("version")
def data_version(data_dir: Annotated[Path, typer.Argument(help="Image folder.")]) -> None:
    """Print the DVC hash of a folder (what MLflow runs record as the data version)."""
    from registry.data_versions import dvc_hash

    v = dvc_hash(data_dir)
    typer.echo(json.dumps({"path": v.path, "md5": v.md5, "nfiles": v.nfiles, "size": v.size}))
