"""The command line: the self-check and the demo job (its table comes from the evaluation's writer)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from metapose_geom import cli
from metapose_geom.demo import DEMO_COLUMNS
from metapose_geom.evaluation import Row
from metapose_geom.evaluation.report import markdown_table


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


def test_the_demo_table_is_written_by_the_evaluation_writer():
    row = Row("s1", "S1", 4, 10, 1, np.array([20.0, 30.0]), np.array([40.0, 44.0]), np.array([0.9, 1.0]),
              np.full(17, 25.0), 0.1234)
    assert markdown_table([row], DEMO_COLUMNS).splitlines() == [
        "| method   | PMPJPE mm | NMPJPE mm | PCK@150 % | ms / frame |",
        "|----------|----------:|----------:|------------:|------------:|",
        "| S1       |     25.0 |     42.0 |        95.0 |       0.123 |",
    ]
