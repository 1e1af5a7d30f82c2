"""``tthc sample``: write a realistic sample inbox (every source format) for one invented province (devkit.sample,
the dev extra)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tthc.cli import app
from tthc.commands import devkit_module

console = Console()


@app.command()
def sample(
    out: Path = typer.Option(..., "--out", help="Folder to write the inbox into (created if missing)."),
    seed: int = typer.Option(7, "--seed", help="Random seed; the same seed writes the same files."),
    scale: float = typer.Option(1.0, "--scale", help="1 = about 3,000 dossiers over 2023-2025; 10 = ten times."),
    include_undecodable: bool = typer.Option(False, "--include-undecodable",
                                             help="Also write a file no encoding decodes with certainty."),
) -> None:
    """Write a sample inbox: <out>/<source>/<entity>/<file>, agencies.csv and manifest.json."""
    generate_inbox = devkit_module("sample", "sample").generate_inbox
    if scale <= 0:
        raise typer.BadParameter("--scale must be positive")
    with console.status(f"Writing the sample inbox to {out} ..."):
        manifest = generate_inbox(out, seed=seed, scale=scale, include_undecodable=include_undecodable)
    t = Table(title=f"Sample inbox in {out} (seed {seed}, scale {scale:g})")
    for col in ("file", "entity", "variant", "rows", "invalid"):
        t.add_column(col, justify="right" if col in ("rows", "invalid") else "left")
    for f in manifest["files"]:
        t.add_row(f["path"], f["entity"], f["variant"], str(f["data_rows"]), str(f["invalid_rows"]))
    console.print(t)
    total = sum(f["data_rows"] for f in manifest["files"])
    console.print(f"{len(manifest['files'])} files, {total:,} rows, "
                  f"{manifest['entities']['dossiers']['distinct_records']:,} dossiers, "
                  f"{len(manifest['invalid_rows'])} invalid rows; manifest: {Path(out) / 'manifest.json'}")
