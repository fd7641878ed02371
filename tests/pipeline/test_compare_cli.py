"""`python -m sd35ui sheet` (the Compare tab's command line): the sheet and its cells, and a clear error."""

from PIL import Image

from sd35ui.core import metadata


def test_cli_sheet_writes_the_sheet_and_its_cells(tmp_path, cli):
    out, cells_dir = tmp_path / "sheet.png", tmp_path / "cells"
    axes = "--prompt", "a red circle", "--x", "guidance=1,4.5", "--y", "steps=2,3"
    proc = cli(
        "sheet", *axes, *"--width 64 --height 64 --seed 9 --out".split(), str(out), "--cells-dir", str(cells_dir)
    )
    assert proc.returncode == 0, proc.stderr
    assert "seed: 9" in proc.stdout
    with Image.open(out) as image:
        fields = metadata.parse_parameters(image.info["parameters"])["fields"]
    assert (fields["X Type"], fields["Y Values"]) == ("Guidance", "2, 3")
    cells = sorted(cells_dir.glob("*.png"))
    assert len(cells) == 4
    steps = sorted(metadata.read_png_metadata(str(p))["settings"].steps for p in cells)
    assert steps == [2, 2, 3, 3]


def test_cli_sheet_bad_axis_is_a_clear_error(tmp_path, cli):
    proc = cli("sheet", *"--prompt x --x guidance --out".split(), str(tmp_path / "s.png"))
    assert proc.returncode == 2 and "TYPE=VALUES" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_sheet_takes_outer_axes_and_writes_the_explorer_page(tmp_path, cli):
    out, cells_dir = tmp_path / "sheet.png", tmp_path / "cells"
    axes = "--prompt", "a red circle", "--x", "guidance=1,4.5", "--y", "steps=1,2", "--z", "sampler=Euler,Heun"
    proc = cli(
        "sheet", *axes, *"--width 32 --height 32 --seed 9 --out".split(), str(out), "--cells-dir", str(cells_dir)
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        fields = metadata.parse_parameters(image.info["parameters"])["fields"]
    assert (fields["Z Type"], fields["Z Values"]) == ("Sampler", "Euler, Heun")
    assert len(list(cells_dir.glob("sheet-p2r*c*.png"))) == 4 and (cells_dir / "index.html").is_file()
