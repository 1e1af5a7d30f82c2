"""``tthc fake-portal``: the fake export API for demos and tests (devkit.fakeportal, the dev extra; pulling itself runs
in the nightly flow)."""

from __future__ import annotations

from pathlib import Path

import typer

from tthc.cli import app
from tthc.commands import devkit_module


@app.command("fake-portal")
def fake_portal(
    data: Path = typer.Option(None, "--data", help="Folder of JSON/JSONL records (national sync shape for "
                              "dossiers, canonical names for the rest), e.g. an inbox; <entity>/ or "
                              "<source>/<entity>/ sub-folders."),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1 (0 = any free port)."),
    token: str = typer.Option("demo-token", "--token", envvar="TTHC_FAKE_PORTAL_TOKEN",
                              help="The bearer token the portal accepts."),
    generate: int = typer.Option(0, "--generate", help="Also serve this many generated dossiers."),
    seed: int = typer.Option(0, "--seed", help="Seed for generated data and random faults."),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Share of requests answering 5xx."),
    rate_limit_every: int = typer.Option(0, "--rate-limit-every", help="Every n-th request answers 429."),
    retry_after: float = typer.Option(1.0, "--retry-after", help="Seconds in 429's Retry-After."),
    slow_rate: float = typer.Option(0.0, "--slow-rate", help="Share of requests answering slowly."),
    slow_seconds: float = typer.Option(0.0, "--slow-seconds", help="Delay of a slow answer."),
    truncate_rate: float = typer.Option(0.0, "--truncate-rate", help="Share of answers cut off mid-body."),
    shift_after_page: int = typer.Option(0, "--shift-after-page",
                                         help="After serving this page, update records mid-read (page shift)."),
    shift_count: int = typer.Option(1, "--shift-count", help="Records updated (or inserted) by a shift."),
    shift_mode: str = typer.Option("update", "--shift-mode", help="update | insert"),
    bad_token: bool = typer.Option(False, "--bad-token", help="Refuse every token (401)."),
    agencies_out: Path = typer.Option(None, "--agencies-out", help="With --generate: write an agencies.csv of the "
                                      "generated dossiers' agencies here (give it as TTHC_AGENCIES_PATH)."),
) -> None:
    """Run a fake export API on 127.0.0.1 serving records through the export API contract, with faults."""
    write_agencies_csv = devkit_module("fakeportal.generate", "fake-portal").write_agencies_csv
    server = devkit_module("fakeportal.server", "fake-portal")
    Faults, serve = server.Faults, server.serve
    if data is None and not generate:
        raise typer.BadParameter("give --data DIR and/or --generate N")
    if agencies_out is not None:
        write_agencies_csv(agencies_out)
        typer.echo(f"wrote {agencies_out}: the generated dossiers' agencies", err=True)
    if data is not None and not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder")
    faults = Faults(error_rate=error_rate, rate_limit_every=rate_limit_every, retry_after=retry_after,
                    slow_rate=slow_rate, slow_seconds=slow_seconds, truncate_rate=truncate_rate,
                    shift_after_page=shift_after_page, shift_count=shift_count, shift_mode=shift_mode,
                    bad_token=bad_token, seed=seed)
    portal = serve(data, port=port, token=token, faults=faults, generated=generate, seed=seed)
    counts = ", ".join(f"{k}: {len(v.keys)}" for k, v in sorted(portal.entities.items())) or "no records"
    typer.echo(f"fake portal on {portal.base_url}/api/v1/export/<entity> ({counts}); Ctrl-C stops it",
               err=True)
    try:
        portal.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        portal.httpd.server_close()
