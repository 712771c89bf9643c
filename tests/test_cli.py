"""The command line: the self-check and the demo job."""

from __future__ import annotations

import re

import pytest

from metapose_geom import cli


def test_selfcheck_passes(capsys):
    assert cli.main(["selfcheck"]) == 0
    assert "self-check passed" in capsys.readouterr().out


def test_demo_writes_table_and_figure(tmp_path, capsys):
    assert cli.main(["demo", "--frames", "24", "--out", str(tmp_path), "--threads", "1"]) == 0
    output = capsys.readouterr().out
    table = (tmp_path / "demo.md").read_text()
    assert (tmp_path / "demo.png").stat().st_size > 50_000
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = [float(value) for value in cells[1:]]
    assert set(rows) == {"S1", "S1+IR"}
    assert rows["S1+IR"][0] < rows["S1"][0]  # PMPJPE
    assert all(0 <= row[2] <= 100 for row in rows.values())  # PCK in percent
    assert re.search(r"\| S1\+IR +\|", output)


def test_demo_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        cli.main(["demo", "--frames", "0"])
    with pytest.raises(ValueError, match="num_cameras"):
        cli.main(["demo", "--frames", "2", "--cameras", "1"])
