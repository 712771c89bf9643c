"""The command line: the self-check, the demo job (its table comes from the evaluation's writer),
and the user errors of make-dataset, evaluate and demo (one line on stderr, exit code 2, nothing
left behind)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metapose_geom import cli
from metapose_geom.datasets import build_synthetic_dataset
from metapose_geom.demo import DEMO_COLUMNS
from metapose_geom.evaluation import Row
from metapose_geom.evaluation.report import markdown_table
from read_only import read_only_available, run_read_only


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
    assert set(rows) == {"S1", "S1+IR", "S1+S2"}
    assert rows["S1+IR"][0] < rows["S1"][0] and rows["S1+S2"][0] < rows["S1"][0]  # PMPJPE
    assert all(0 <= row[2] <= 100 for row in rows.values())  # PCK in percent
    assert re.search(r"\| S1\+IR +\|", output)


def test_demo_rejects_bad_arguments(tmp_path, capsys):
    for extra, expected in [(["--frames", "0"], "--frames: expected an integer >= 1, got 0"),
                            (["--cameras", "1"], "--cameras: expected an integer in [2, 8], got 1")]:
        assert cli.main(["demo", "--out", str(tmp_path / "demo"), *extra]) == 2
        assert capsys.readouterr().err == f"metapose-geom demo: {expected}\n"
    assert not (tmp_path / "demo").exists()


def test_the_demo_table_is_written_by_the_evaluation_writer():
    row = Row("s1", "S1", 4, 10, 1, np.array([20.0, 30.0]), np.array([40.0, 44.0]), np.array([0.9, 1.0]),
              np.full(17, 25.0), 0.1234)
    assert markdown_table([row], DEMO_COLUMNS).splitlines() == [
        "| method   | PMPJPE mm | NMPJPE mm | PCK@150 % | ms / frame |",
        "|----------|----------:|----------:|------------:|------------:|",
        "| S1       |     25.0 |     42.0 |        95.0 |       0.123 |",
    ]


# --------------------------------------------------------------------------- user errors

SEED_2_63 = str(2**63)


def one_line_error(capsys, prog: str) -> str:
    """The command's stderr, asserted to be one line starting with ``prog: ``; returns the rest."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"metapose-geom {prog}: "), err
    return err[len(f"metapose-geom {prog}: "):].strip()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "synthetic_test_2cam.h5"
    return build_synthetic_dataset(path, 3, 2, 5, progress=False)


class TestMakeDatasetErrors:
    ARGS = ["--train-frames", "2", "--test-frames", "0", "--cameras", "2", "--no-progress"]

    @pytest.mark.parametrize("extra, expected", [
        (["--threads", "100000"], "--threads: expected an integer in [0, 1024], got 100000"),
        (["--threads", "-1"], "--threads: expected an integer in [0, 1024], got -1"),
        (["--seed", SEED_2_63], f"--seed: expected an integer in [0, {2**63 - 1}], got {SEED_2_63}"),
        (["--seed", str(2**64)], f"--seed: expected an integer in [0, {2**63 - 1}], got {2**64}"),
        (["--train-frames", "-1"], "--train-frames: expected an integer >= 0, got -1"),
        (["--cameras", "1"], "--cameras: expected an integer in [2, 8], got 1"),
        (["--chunk", "0"], "--chunk: expected an integer >= 1, got 0"),
    ])
    def test_an_option_out_of_range(self, tmp_path, capsys, extra, expected):
        out = tmp_path / "new" / "data"
        assert cli.main(["make-dataset", "--out", str(out), *self.ARGS, *extra]) == 2
        assert one_line_error(capsys, "make-dataset") == expected
        assert list(tmp_path.iterdir()) == []  # no folder, no .creating

    def test_an_out_that_is_a_file(self, tmp_path, capsys):
        (tmp_path / "notes.txt").write_text("a file")
        assert cli.main(["make-dataset", "--out", str(tmp_path / "notes.txt" / "data"), *self.ARGS]) == 2
        assert one_line_error(capsys, "make-dataset") == f"--out {tmp_path / 'notes.txt' / 'data'}: " \
                                                         f"{tmp_path / 'notes.txt'} is not a folder"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    def test_a_file_in_use(self, tmp_path, capsys):
        argv = ["make-dataset", "--out", str(tmp_path), *self.ARGS]
        assert cli.main(argv) == 0
        capsys.readouterr()
        path = tmp_path / "synthetic_train_2cam.h5"
        before = path.read_bytes()
        from metapose_geom.datasets import DatasetReader

        with DatasetReader(path):  # a notebook holding the file
            assert cli.main(["make-dataset", "--out", str(tmp_path), "--train-frames", "4", *self.ARGS[2:]]) == 2
        assert one_line_error(capsys, "make-dataset").startswith(f"{path}: in use")
        assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]

    def test_a_file_of_other_parameters(self, tmp_path, capsys):
        assert cli.main(["make-dataset", "--out", str(tmp_path), *self.ARGS]) == 0
        assert cli.main(["make-dataset", "--out", str(tmp_path), *self.ARGS, "--seed", "1"]) == 2
        assert "cannot append, the file differs: attribute seed" in one_line_error(capsys, "make-dataset")

    def test_a_read_only_file_system(self, tmp_path):
        """--out inside a folder bind-mounted read-only in the subprocess (read_only.py)."""
        if not read_only_available():
            pytest.skip("needs unshare and mount for a read-only bind")
        for out in (tmp_path, tmp_path / "new"):
            done = run_read_only(tmp_path, [sys.executable, "-c", "import sys; from metapose_geom.cli import main; "
                                            "sys.exit(main())", "make-dataset", "--out", str(out), *self.ARGS])
            assert done.returncode == 2, done.stderr
            assert done.stderr == f"metapose-geom make-dataset: --out {out}: not writable" + \
                ("" if out == tmp_path else f" ({tmp_path} is not writable)") + " (read-only file system)\n"
            assert list(tmp_path.iterdir()) == []

    def test_a_process_prints_one_line_and_no_traceback(self, tmp_path):
        """The whole process, as a user runs it: exit code 2, one line, no stale .creating."""
        done = subprocess.run([sys.executable, "-c", "import sys; from metapose_geom.cli import main; sys.exit(main())",
                               "make-dataset", "--out", str(tmp_path), *self.ARGS, "--seed", SEED_2_63],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert list(tmp_path.iterdir()) == []


class TestEvaluateErrors:
    ARGS = ["--cameras", "2", "--methods", "s1", "--no-progress"]

    def test_a_missing_file(self, tmp_path, capsys):
        out = tmp_path / "out"
        assert cli.main(["evaluate", str(tmp_path / "nope.h5"), "--out", str(out), *self.ARGS]) == 2
        assert one_line_error(capsys, "evaluate") == f"{tmp_path / 'nope.h5'}: no such file"
        assert cli.main(["evaluate", str(tmp_path), "--out", str(out), *self.ARGS]) == 2
        assert one_line_error(capsys, "evaluate") == f"{tmp_path}: a folder, not a dataset file"
        assert list(tmp_path.iterdir()) == []

    def test_a_file_that_is_not_hdf5(self, tmp_path, capsys):
        (tmp_path / "data.h5").write_bytes(b"not an HDF5 file")
        assert cli.main(["evaluate", str(tmp_path / "data.h5"), "--out", str(tmp_path / "out"), *self.ARGS]) == 2
        assert one_line_error(capsys, "evaluate").startswith(f"{tmp_path / 'data.h5'}: not a readable HDF5 file")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]

    def test_an_out_that_is_a_file(self, dataset, tmp_path, capsys, monkeypatch):
        from metapose_geom.evaluation import runs

        monkeypatch.setattr(runs, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking --out"))
        (tmp_path / "notes.txt").write_text("a file")
        for out, reason in [(tmp_path / "notes.txt", "exists and is not a folder"),
                            (tmp_path / "notes.txt" / "out", f"{tmp_path / 'notes.txt'} is not a folder")]:
            assert cli.main(["evaluate", str(dataset), "--out", str(out), *self.ARGS]) == 2
            assert one_line_error(capsys, "evaluate") == f"--out {out}: {reason}"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    @pytest.mark.parametrize("extra, expected", [
        (["--threads", "100000"], "--threads: expected an integer in [0, 1024], got 100000"),
        (["--seed", SEED_2_63], f"--seed: expected an integer in [0, {2**63 - 1}], got {SEED_2_63}"),
        (["--frames", "0"], "--frames: expected an integer >= 1, got 0"),
        (["--workers", "0"], "--workers: expected an integer >= 1, got 0"),
        (["--cache", " "], "--cache: expected a file path"),
        (["--frames", "4"], "frames: asked for 4, but {dataset} has 3 committed frames"),
    ])
    def test_an_option_out_of_range(self, dataset, tmp_path, capsys, extra, expected):
        assert cli.main(["evaluate", str(dataset), "--out", str(tmp_path / "out"), *self.ARGS, *extra]) == 2
        assert one_line_error(capsys, "evaluate") == expected.format(dataset=dataset)
        assert list(tmp_path.iterdir()) == []

    def test_a_read_only_file_system(self, dataset, tmp_path):
        if not read_only_available():
            pytest.skip("needs unshare and mount for a read-only bind")
        done = run_read_only(tmp_path, [sys.executable, "-c", "import sys; from metapose_geom.cli import main; "
                                        "sys.exit(main())", "evaluate", str(dataset), "--out", str(tmp_path / "out"),
                                        *self.ARGS])
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == (f"metapose-geom evaluate: --out {tmp_path / 'out'}: not writable ({tmp_path} is not "
                               "writable) (read-only file system)\n")


class TestDemoErrors:
    @pytest.mark.parametrize("extra, expected", [
        (["--threads", "100000"], "--threads: expected an integer in [0, 1024], got 100000"),
        (["--seed", SEED_2_63], f"--seed: expected an integer in [0, {2**63 - 1}], got {SEED_2_63}"),
        (["--seed", "-1"], f"--seed: expected an integer in [0, {2**63 - 1}], got -1"),
    ])
    def test_an_option_out_of_range(self, tmp_path, capsys, extra, expected):
        assert cli.main(["demo", "--frames", "2", "--out", str(tmp_path / "demo"), *extra]) == 2
        assert one_line_error(capsys, "demo") == expected
        assert list(tmp_path.iterdir()) == []

    def test_an_out_that_is_a_file(self, tmp_path, capsys):
        (tmp_path / "notes.txt").write_text("a file")
        assert cli.main(["demo", "--frames", "2", "--out", str(tmp_path / "notes.txt")]) == 2
        assert one_line_error(capsys, "demo") == f"--out {tmp_path / 'notes.txt'}: exists and is not a folder"
