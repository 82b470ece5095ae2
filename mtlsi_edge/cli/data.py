"""``data synth``: render the SynthIndoor dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from mtlsi_edge.cli.app import app, console, print_path
from mtlsi_edge.cli.options import parse_size
from mtlsi_edge.fileio import check_output_dir

data_app = typer.Typer(help="Render or inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Output folder (NYUD 'NYUDv2' layout)."),
    n: int = typer.Option(200, "--n", min=1, help="Number of images."),
    size: str = typer.Option("240x320", help="Image size HxW."),
    seed: int = typer.Option(0, help="Dataset seed (sample i is a pure function of seed, i)."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.9, help="Share of ids in val."),
    walkthrough: bool = typer.Option(True, help="Also render walkthrough.mp4 (a camera path)."),
) -> None:
    """Render SynthIndoor: RGB + NYUD-40 labels, depth, normals and boundaries, exact GT.

    Examples:
      mtlsi-edge data synth --n 2000 --out data/synth
      mtlsi-edge data synth --n 50 --size 120x160 --seed 3 --out /tmp/tiny
    """
    from rich.progress import Progress

    from mtlsi_edge.data.synthindoor import render_walkthrough, write_dataset

    hw = parse_size(size)
    check_output_dir(out)
    with Progress(console=console) as prog:
        bar = prog.add_task("rendering", total=n)
        root = write_dataset(out, n=n, size=hw, seed=seed, val_fraction=val_fraction,
                             progress=lambda k, _n: prog.update(bar, completed=k))
    print_path("dataset", root)
    if walkthrough:
        video = render_walkthrough(Path(out) / "walkthrough.mp4", size=hw, seed=seed)
        print_path("walkthrough video", video)
