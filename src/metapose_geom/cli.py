"""The ``metapose-geom`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def selfcheck(seed: int = 0) -> int:
    """Call every kernel of the compiled core on a seeded scene and print what it returns.

    Returns the number of checks that failed (0 when the core is healthy).
    """
    from . import geometry as g
    from . import metrics
    from .skeletons import H36M_17

    rng = np.random.default_rng(seed)
    pose = H36M_17.rest_pose()
    failures = 0

    def report(name: str, value: float, limit: float, unit: str = "") -> None:
        nonlocal failures
        ok = bool(np.isfinite(value) and value <= limit)
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<58} {value:10.3g} {unit} (limit {limit:g})")

    from ._build import build_info

    print("metapose-geom build:")
    print("\n".join(f"  {line}" for line in str(build_info()).splitlines()))
    print(f"metapose-geom self-check: {H36M_17.num_joints}-joint rest pose, seed {seed}, "
          f"{g.get_num_threads()} threads")

    rotvec = rng.normal(scale=0.8, size=(4, 3))
    rotation = g.rodrigues_to_matrix(rotvec)
    report("Rodrigues round trip, max |v - v'|", np.abs(g.matrix_to_rodrigues(rotation) - rotvec).max(), 1e-12)
    report("6D round trip, max |R - R'|", np.abs(g.rot6d_to_matrix(g.matrix_to_rot6d(rotation)) - rotation).max(), 1e-12)

    scale, shift = rng.uniform(0.5, 2.0, 4), rng.normal(size=(4, 3))
    points = g.project_weak(pose, rotation, scale, shift)
    direct = scale[:, None, None] * (pose @ rotation) + shift[:, None, :]
    report("weak projection of 4 cameras vs matrix product, max error", np.abs(points - direct[..., :2]).max(), 1e-9, "mm")

    camera_rotation = g.rodrigues_to_matrix(np.array([0.1, -0.3, 0.05]))
    translation = np.array([0.0, 0.0, 4000.0])
    intrinsics = np.array([1150.0, 1145.0, 960.0, 540.0])
    distortion = np.array([-0.21, 0.07, 4e-4, -2e-4, -0.01])
    pixels = g.project_perspective(pose, camera_rotation, translation, intrinsics, distortion)
    camera_points = pose @ camera_rotation.T + translation
    back = g.undistort_points(pixels, intrinsics, distortion)
    report("project then undistort, max error", np.abs(back - camera_points[:, :2] / camera_points[:, 2:]).max() * 1150,
           1e-6, "px")

    mixtures = np.stack([np.full(4, 0.25), rng.normal(size=4), rng.normal(size=4), np.full(4, 0.5)], axis=-1)
    log_likelihood = g.mixture_log_likelihood(np.zeros(2), mixtures)
    print(f"       mixture log-likelihood of the origin under a random 4-component mixture: {log_likelihood:.6f}")
    far = g.mixture_log_likelihood(np.array([1e6, -1e6]), mixtures)
    report("mixture log-likelihood 1e6 away is finite (|value|, finite)", 0.0 if np.isfinite(far) else np.inf, 0.0)

    moved = 1.7 * pose @ rotation[0] + np.array([100.0, -50.0, 3000.0])
    similarity = g.procrustes(pose, moved)
    report("Procrustes recovers rotation, max error", np.abs(similarity.rotation - rotation[0]).max(), 1e-10)
    report("Procrustes recovers scale, error", abs(float(similarity.scale) - 1.7), 1e-10)

    noisy = pose + rng.normal(scale=20.0, size=pose.shape)
    print(f"       20 mm joint noise: PMPJPE {float(metrics.pmpjpe(noisy, pose)):.1f} mm, "
          f"NMPJPE {float(metrics.nmpjpe(noisy, pose)):.1f} mm, PCK@150 {float(metrics.pck(noisy, pose)):.2f}")

    batch = rng.normal(size=(200_000, 6))
    g.rot6d_to_matrix(batch)  # warm-up: first touch of the output pages, thread start
    start = time.perf_counter()
    g.rot6d_to_matrix(batch)
    elapsed = time.perf_counter() - start
    print(f"       rot6d_to_matrix on 200000 items: {elapsed * 1e3:.2f} ms")
    print("self-check passed" if failures == 0 else f"self-check FAILED: {failures} check(s)")
    return failures


def make_dataset_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``make-dataset``: build (or resume) the synthetic HDF5 sets and print what was written.

    User errors (an option out of range, an ``--out`` that cannot be a writable folder, a file in
    use or not writable, a file from other parameters): one line on stderr, exit code 2, nothing
    left behind (a folder this run created is removed when still empty)."""
    from .datasets import DatasetReader, make_datasets
    from .datasets.files import check_output_folder
    from .datasets.synthetic import MAX_SEED
    from .geometry import set_num_threads

    prog = "metapose-geom make-dataset"
    problem = _out_of_range(args, (("train_frames", 0, None), ("test_frames", 0, None), ("seed", 0, MAX_SEED),
                                   ("threads", 0, MAX_CLI_THREADS), ("chunk", 1, None), ("cameras", 2, 8)))
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    out = existing = Path(args.out)
    try:
        existing = next(folder for folder in (out, *out.parents) if folder.exists())
        check_output_folder(out, "--out")
        set_num_threads(args.threads)
        paths = make_datasets(
            out, train_frames=args.train_frames, test_frames=args.test_frames, cameras=args.cameras,
            seed=args.seed, chunk=args.chunk, overwrite=args.overwrite, progress=not args.no_progress,
        )
        lines = []
        for path in paths:
            with DatasetReader(path) as reader:
                lines.append(f"{path}: {len(reader)} frames, {reader.num_cameras} cameras, "
                             f"{path.stat().st_size / 1e6:.1f} MB")
    except (ValueError, OSError) as error:
        for folder in (out, *out.parents):  # the folders this run created, while empty
            if folder == existing:
                break
            try:
                folder.rmdir()
            except OSError:
                break
        print(f"{prog}: {_one_line(error)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"make-dataset: {len(paths)} file(s) in {time.perf_counter() - start:.1f} s")
    return 0


#: The most ``--threads`` make-dataset, evaluate and demo accept (the core takes up to 65536).
MAX_CLI_THREADS = 1024
#: The largest ``--seed`` (a signed 64-bit integer, as files and reports store it).
MAX_CLI_SEED = 2**63 - 1


def _out_of_range(args: argparse.Namespace, bounds: Sequence[tuple[str, int, int | None]]) -> str | None:
    """The first integer option outside its ``(name, low, high)`` bounds (a list option: each value;
    None: not given), as "--name: expected ..., got ..."; None when all are within."""
    from ._checks import check_int

    for name, low, high in bounds:
        value = getattr(args, name)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            try:
                check_int(item, f"--{name.replace('_', '-')}", low, high)
            except ValueError as error:
                return str(error)
    return None


def _one_line(error: BaseException) -> str:
    """An error as one line: an OSError that names a file as "file: reason", others as their message."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


def evaluate_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``evaluate``: the evaluation tables and plots of a dataset file (:mod:`metapose_geom.evaluation`).

    User errors (an option out of range, a missing or unreadable dataset, an ``--out`` that cannot
    be a writable folder, a bad frame without ``--skip-bad-frames``): one line on stderr, exit
    code 2, checked before any solving and with nothing written."""
    import shlex

    from .datasets.files import check_output_folder
    from .evaluation import ANIPOSE_CACHE_NAME, run_evaluation

    prog = "metapose-geom evaluate"
    problem = _out_of_range(args, (("frames", 1, None), ("anipose_frames", 1, None), ("anipose_batch", 1, None),
                                   ("workers", 1, None), ("seed", 0, MAX_CLI_SEED), ("threads", 0, MAX_CLI_THREADS)))
    if problem is None and args.cache is not None and not args.cache.strip():
        problem = "--cache: expected a file path"
    if problem is None and not Path(args.dataset).is_file():
        what = "a folder, not a dataset file" if Path(args.dataset).is_dir() else "no such file"
        problem = f"{args.dataset}: {what}"
    if problem is None:
        try:
            check_output_folder(args.out, "--out")
        except OSError as error:
            problem = str(error)
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    command = "metapose-geom " + " ".join(shlex.quote(part) for part in args.argv)
    try:
        run_evaluation(
            args.dataset, out=args.out, command=command, cameras=args.cameras, frames=args.frames,
            methods=args.methods, seed=args.seed, subsets=args.subsets, anipose_frames=args.anipose_frames,
            anipose_batch=args.anipose_batch, anipose_adjust_intrinsics=not args.anipose_extrinsics_only,
            workers=args.workers, threads=args.threads, progress=not args.no_progress,
            cache=None if args.no_cache else (args.cache if args.cache is not None else Path(args.out) / ANIPOSE_CACHE_NAME),
            skip_bad_frames=args.skip_bad_frames, stage2_ablations=args.stage2_ablations,
        )
    except ImportError as error:
        print(f"{prog}: {error}; or leave the anipose-* methods out of --methods", file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        message = _one_line(error).replace("pass skip_bad_frames=True, or --skip-bad-frames,", "pass --skip-bad-frames")
        print(f"{prog}: {message}", file=sys.stderr)
        return 2
    return 0


def _loss_weights(items: Sequence[str]) -> dict[str, float]:
    """``["fwd=1", "objective=0.5"]`` -> ``{"fwd": 1.0, "objective": 0.5}``; ValueError naming --loss."""
    weights: dict[str, float] = {}
    for item in items:
        name, equals, value = item.partition("=")
        try:
            if not equals:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--loss: expected NAME=WEIGHT items such as fwd=1 objective=0.1, got {item!r}") from None
    return weights


#: TrainConfig fields whose errors the command names by their option
_TRAIN_OPTIONS = {"train_files": "DATA", "val_frames": "--val-frames", "camera_min": "--cameras",
                  "camera_max": "--cameras", "batch_size": "--batch-size", "lr": "--lr", "epochs": "--epochs",
                  "examples_per_epoch": "--examples-per-epoch", "max_stages": "--stages", "kind": "--kind",
                  "spec": "--spec", "pose_head": "--pose-head", "inputs": "--inputs", "num_cameras": "--num-cameras",
                  "bone_input": "--bone-input", "loss": "--loss", "select": "--select", "seed": "--seed",
                  "threads": "--threads", "lr_schedule": "--lr-schedule", "lr_min": "--lr-min",
                  "standardise_examples": "--standardise-examples", "teacher_cache": "--teacher-cache"}


def train_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``train``: stage 2 from dataset files (:func:`metapose_geom.nn.train.train`).

    User errors (torch missing, an option out of range, a missing data file, an ``--out`` that
    cannot be a writable folder, a checkpoint of another config): one line on stderr, exit code 2."""
    import re

    from .datasets.files import check_output_folder

    prog = "metapose-geom train"
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f'{prog}: training needs torch; pip install "metapose-geom[train]"', file=sys.stderr)
        return 2
    from .nn.train import TrainConfig, train

    try:
        problem = _out_of_range(args, (("epochs", 1, None), ("examples_per_epoch", 1, None), ("batch_size", 1, None),
                                       ("stages", 1, 64), ("val_frames", 1, None), ("cameras", 2, 8),
                                       ("seed", 0, MAX_CLI_SEED), ("threads", 0, MAX_CLI_THREADS)))
        if problem:
            raise ValueError(problem)
        for path in args.data:
            if not Path(path).is_file():
                raise ValueError(f"{path}: {'a folder, not a dataset file' if Path(path).is_dir() else 'no such file'}")
        given = {
            "val_frames": args.val_frames, "batch_size": args.batch_size, "lr": args.lr,
            "lr_schedule": args.lr_schedule, "lr_min": args.lr_min, "epochs": args.epochs,
            "examples_per_epoch": args.examples_per_epoch, "max_stages": args.stages, "kind": args.kind,
            "spec": args.spec, "pose_head": None if args.pose_head is None else tuple(args.pose_head),
            "inputs": None if args.inputs is None else tuple(args.inputs), "num_cameras": args.num_cameras,
            "bone_input": args.bone_input, "loss": None if args.loss is None else _loss_weights(args.loss),
            "select": args.select, "seed": args.seed, "threads": args.threads,
            "standardise_examples": args.standardise_examples, "teacher_cache": args.teacher_cache,
        }
        if args.cameras is not None:
            given.update(camera_min=args.cameras[0], camera_max=args.cameras[1])
        # what is not given takes TrainConfig's default: the recipe lives there only
        values = {"train_files": tuple(args.data), **{k: v for k, v in given.items() if v is not None}}
        try:
            config = TrainConfig(**values)
        except ValueError as error:  # name the option, not the field
            message = str(error)
            found = re.match(r"^(\w+)(\[[^\]]*\])?:", message)
            if found and found.group(1) in _TRAIN_OPTIONS:
                message = _TRAIN_OPTIONS[found.group(1)] + message[len(found.group(1)):]
            raise ValueError(message) from None
        check_output_folder(args.out, "--out")
        weights = train(config, args.out, progress=not args.no_progress, resume=not args.no_resume)
    except (ValueError, OSError) as error:
        print(f"{prog}: {_one_line(error)}", file=sys.stderr)
        return 2
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        print(f"{prog}: wrote {weights} (log {Path(args.out) / 'log.csv'}, curves {Path(args.out) / 'curves.png'})")
    return 0


def _solver_options(items: Sequence[str] | None) -> dict | None:
    """``--options``: one JSON object, or ``NAME=VALUE`` items (a value is read as JSON when it
    parses, else kept as a string: ``steps=50 init=random weights=model.safetensors``); ValueError
    naming --options."""
    import json

    if not items:
        return None
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            values = json.loads(items[0])
        except json.JSONDecodeError as error:
            raise ValueError(f"--options: not a JSON object ({error.msg} at column {error.colno})") from None
        if not isinstance(values, dict):
            raise ValueError(f"--options: expected a JSON object, got {items[0]!r}")
        return values
    values = {}
    for item in items:
        name, equals, text = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"--options: expected NAME=VALUE items (steps=50 init=random) or one JSON object, "
                             f"got {item!r}")
        try:
            values[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[name.strip()] = text
    return values


def solve_dataset_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``solve-dataset``: every frame of a dataset file on a Dask cluster (:mod:`metapose_geom.distributed`)
    into a solution file, resumably.

    User errors (dask missing, an option out of range, a missing input, bad options, an output of
    another run): one line on stderr, exit code 2."""
    prog = "metapose-geom solve-dataset"
    try:
        import distributed  # noqa: F401
    except ImportError:
        print(f'{prog}: solving on a cluster needs dask.distributed; pip install "metapose-geom[dask]"',
              file=sys.stderr)
        return 2
    from .distributed import solve_dataset

    try:
        problem = _out_of_range(args, (("workers", 1, MAX_CLI_THREADS), ("chunk", 1, None),
                                       ("threads", 0, MAX_CLI_THREADS), ("retries", 0, 100)))
        if problem:
            raise ValueError(problem)
        if args.scheduler is not None and args.workers is not None:
            raise ValueError("--workers: a running cluster (--scheduler) has its own workers; give one or the other")
        source = Path(args.input)
        if not source.is_file():
            raise ValueError(f"{source}: {'a folder, not a dataset file' if source.is_dir() else 'no such file'}")
        if Path(args.out).resolve() == source.resolve():
            raise ValueError(f"--out: {args.out} is the input; give another file")
        if Path(args.out).is_dir():
            raise ValueError(f"--out {args.out}: a folder; give a file name such as solutions.h5")
        options = _solver_options(args.options)
        report = solve_dataset(source, args.out, method=args.method, options=options, scheduler=args.scheduler,
                               workers=args.workers, chunk=args.chunk, solver_threads=args.threads,
                               retries=args.retries, progress=not args.no_progress)
    except (ValueError, OSError) as error:
        print(f"{prog}: {_one_line(error)}", file=sys.stderr)
        return 2
    before = report.frames - report.solved
    resumed = f" ({before} committed before, resumed)" if before else ""
    print(f"{prog}: {report.out}: {report.frames} frames by {args.method}, {report.solved} solved in "
          f"{report.seconds:.1f} s{resumed}")
    return 0


#: What ``solve`` writes into ``--out``.
SOLVE_OUTPUTS = ("poses.trc", "poses.csv", "cameras.npz", "solve.png")


def _read_capture(args: argparse.Namespace):
    """The ``solve`` command's input: a folder of per-camera JSON folders, or an .npz (ValueError otherwise)."""
    from . import io

    source = Path(args.input)
    fields = {name: getattr(args, name) for name in ("keypoints", "confidences", "mono3d") if getattr(args, name)}
    if not source.exists():
        raise ValueError(f"{source}: no such file or folder")
    if source.is_dir():
        given = [f"--{name}" for name in fields] + (["--no-mono3d"] if args.no_mono3d else [])
        if given:
            raise ValueError(f"{' '.join(given)}: for .npz input only; {source} is a folder")
        return io.read_openpose(source, skeleton=args.skeleton or "body25", person=args.person, fps=args.fps)
    if source.suffix.lower() != ".npz":
        raise ValueError(f"{source}: expected a folder of per-camera JSON folders or an .npz file")
    if args.no_mono3d:
        fields["mono3d"] = None
    capture = io.read_npz(source, skeleton=args.skeleton, **fields)
    if args.fps is not None:
        from dataclasses import replace

        capture = replace(capture, fps=args.fps)
    return capture


def _prepare_out(out: str) -> tuple[Path, bool]:
    """The output folder, created when missing (with its parents); whether it was created.
    ValueError when it cannot be a writable folder."""
    import os

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder}: exists and is not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {folder}: cannot create it ({error.strerror or error})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {folder}: not writable")
    return folder, created


def _print_warnings(prog: str, caught: list) -> None:
    """The warnings caught so far, once each, as ``prog: warning: ...`` lines on stderr; then forget them."""
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        print(f"{prog}: warning: {message}", file=sys.stderr)
    del caught[:]


def _write_solve_outputs(result, folder: Path, subject_height: float | None) -> None:
    """poses.trc, poses.csv, cameras.npz and solve.png into ``folder``; on failure the files written
    so far are removed and the error names the file."""
    from . import io
    from .figures import plot_solve

    writers = (("poses.trc", io.write_trc), ("poses.csv", io.write_csv), ("cameras.npz", io.write_cameras),
               ("solve.png", lambda path, found, height: plot_solve(found, path, subject_height=height)))
    written: list[Path] = []
    for name, write in writers:
        try:
            write(folder / name, result, subject_height)
        except (OSError, ValueError) as error:
            for path in written:
                path.unlink(missing_ok=True)
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ValueError(f"writing {folder / name}: {reason}") from None
        written.append(folder / name)


def solve_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``solve``: read a capture (JSON folders or an .npz), solve every frame, write the poses (TRC,
    CSV), the cameras (npz) and a figure. User errors: one line on stderr, exit code 2, nothing written."""
    import shutil
    import warnings

    from ._checks import check_number
    from .io.writers import _height

    prog = "metapose-geom solve"
    problem = _out_of_range(args, (("threads", 0, MAX_CLI_THREADS),))
    if args.weights is not None and args.method != "metapose":
        problem = f"--weights: only --method metapose takes weights, got --method {args.method}"
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    options = None if args.weights is None else {"weights": args.weights}
    if args.person != "track":
        try:
            args.person = int(args.person)
        except ValueError:
            parser.error(f"--person: expected 'track' or a person index, got {args.person!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.subject_height is not None:
                _height(args.subject_height)
            if args.fps is not None:
                check_number(args.fps, "--fps", 0.0, low_open=True)
            capture = _read_capture(args)
            folder, created = _prepare_out(args.out)
        except ValueError as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 2
        guesses = ", monocular 3D" if capture.mono3d is not None else ""
        print(f"{prog}: {args.input}: {capture.num_cameras} cameras ({', '.join(capture.camera_names)}), "
              f"{capture.num_frames} frames, {capture.skeleton.name}{guesses}")
        _print_warnings(prog, caught)
        start = time.perf_counter()
        try:
            result = capture.solve(method=args.method, options=options, progress=not args.no_progress,
                                   threads=args.threads)
            seconds = time.perf_counter() - start
            if not result.solved.any():
                first = next(iter(result.skip_reasons.values()), "no frames")
                raise ValueError(f"no frame could be solved ({result.summary()}; frame 0: {first})")
            _write_solve_outputs(result, folder, args.subject_height)
        except ValueError as error:  # a method that cannot solve these views, or a file that cannot be written
            if created:
                shutil.rmtree(folder, ignore_errors=True)
            print(f"{prog}: {error}", file=sys.stderr)
            return 2
        _print_warnings(prog, caught)
    print(f"{prog}: {result.summary()} in {seconds:.2f} s")
    for frame, reason in list(result.skip_reasons.items())[:5]:
        print(f"  skipped frame {int(capture.frame_numbers[frame])}: {reason}")
    if result.skipped > 5:
        print(f"  ... and {result.skipped - 5} more skipped frames")
    print(f"{prog}: wrote {', '.join(str(folder / name) for name in SOLVE_OUTPUTS)}")
    return 0


def calibrate_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``calibrate``: a fixed rig's perspective cameras from the person it filmed (read as ``solve``
    reads), written as anipose or Pose2Sim TOML with a PNG of the rig beside it. User errors: one
    line on stderr, exit code 2, nothing written."""
    import warnings
    from dataclasses import replace

    from .figures import plot_calibration
    from .rig import calibrate

    prog = "metapose-geom calibrate"
    problem = _out_of_range(args, (("threads", 0, MAX_CLI_THREADS), ("max_frames", 0, None)))
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    if args.person != "track":
        try:
            args.person = int(args.person)
        except ValueError:
            parser.error(f"--person: expected 'track' or a person index, got {args.person!r}")
    out = Path(args.out)
    figure = out.with_suffix(".png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if out.suffix.lower() != ".toml":
                raise ValueError(f"--out {out}: expected a .toml file name")
            if out.exists() and out.is_dir():
                raise ValueError(f"--out {out}: is a folder")
            if not out.parent.exists():
                raise ValueError(f"--out {out}: folder {out.parent} does not exist")
            distance = None
            if args.camera_distance is not None:
                first, second, metres = args.camera_distance
                try:
                    distance = (first, second, float(metres))
                except ValueError:
                    raise ValueError(f"--camera-distance: expected NAME NAME METRES, got {metres!r} for the "
                                     "metres") from None
            capture = _read_capture(args)
            if args.image_size is not None:
                capture = replace(capture, image_size=np.tile(np.asarray(args.image_size, dtype=float),
                                                              (capture.num_cameras, 1)))
        except ValueError as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 2
        print(f"{prog}: {args.input}: {capture.num_cameras} cameras ({', '.join(capture.camera_names)}), "
              f"{capture.num_frames} frames, {capture.skeleton.name}")
        _print_warnings(prog, caught)
        start = time.perf_counter()
        try:
            calibration = calibrate(capture, subject_height=args.subject_height, camera_distance=distance,
                                    intrinsics=args.intrinsics, distortion=args.distortion,
                                    principal_point=args.principal_point, max_frames=args.max_frames or None,
                                    progress=not args.no_progress,
                                    threads=args.threads)
            seconds = time.perf_counter() - start
            partial = out.with_name(f".{out.name}.partial")  # written whole, then renamed over --out
            try:
                calibration.save(partial, format=args.format)
                partial.replace(out)
            finally:
                partial.unlink(missing_ok=True)
        except (ValueError, OSError) as error:
            print(f"{prog}: {_one_line(error)}", file=sys.stderr)
            return 2
        _print_warnings(prog, caught)
    try:
        points = calibration.triangulate(*capture.joints)
        plot_calibration(calibration, figure, points)
    except (ValueError, OSError) as error:
        print(f"{prog}: warning: no figure ({_one_line(error)})", file=sys.stderr)
    print(calibration.summary())
    rejected = len(calibration.frames_rejected)
    print(f"{prog}: {len(calibration.frames_used)} frames used, {rejected} rejected, in {seconds:.1f} s")
    print(f"{prog}: wrote {out} ({args.format}) and {figure}")
    return 0


def evaluate_capture_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``evaluate-capture``: every method on a real capture's raw detections against its pseudo
    ground truth (:mod:`metapose_geom.evaluation.capture`): table, CSV and figure."""
    import shlex

    from .evaluation.capture import evaluate_capture, write_capture_report

    problem = _out_of_range(args, (("threads", 0, MAX_CLI_THREADS),))
    if problem:
        print(f"metapose-geom evaluate-capture: {problem}", file=sys.stderr)
        return 2
    if not Path(args.capture).is_file():
        print(f"metapose-geom evaluate-capture: {args.capture}: no such file", file=sys.stderr)
        return 2
    from .geometry import set_num_threads

    set_num_threads(args.threads)
    command = "metapose-geom " + " ".join(shlex.quote(part) for part in args.argv)
    try:
        result = evaluate_capture(args.capture, args.methods, keypoints=args.keypoints, confidences=args.confidences,
                                  mono3d=args.mono3d, skeleton=args.skeleton, progress=not args.no_progress)
        table = write_capture_report(result, args.out, command=command)
    except (ValueError, OSError) as error:
        print(f"metapose-geom evaluate-capture: {error}", file=sys.stderr)
        return 2
    print(table)
    print(f"metapose-geom evaluate-capture: wrote {Path(args.out) / 'capture.md'}, capture.csv, capture.png")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metapose-geom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("selfcheck", help="call every kernel of the compiled core and print the results")
    check.add_argument("--seed", type=int, default=0)
    demo = commands.add_parser("demo", help="S1 and S1+IR on a seeded synthetic test set: table and figure")
    demo.add_argument("--frames", type=int, default=300, help="test frames (default 300)")
    demo.add_argument("--cameras", type=int, default=4, help="cameras per frame, 2 to 8 (default 4)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0, help="threads (default: one per core)")
    demo.add_argument("--out", default="metapose-demo", help="folder for demo.png and demo.md")
    make = commands.add_parser(
        "make-dataset", help="synthetic train and test HDF5 sets with S1 and IR results (resumes if interrupted)"
    )
    make.add_argument("--out", required=True, help="folder for synthetic_{split}_{C}cam.h5")
    make.add_argument("--train-frames", type=int, default=4000, help="train frames per camera count (default 4000)")
    make.add_argument("--test-frames", type=int, default=1000, help="test frames per camera count (default 1000)")
    make.add_argument("--cameras", type=int, nargs="+", default=[2, 3, 4], help="camera counts (default 2 3 4)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--chunk", type=int, default=256, help="frames computed and committed at a time (default 256)")
    make.add_argument("--threads", type=int, default=0, help="solver threads (default: one per core)")
    make.add_argument("--overwrite", action="store_true", help="rebuild existing files instead of resuming them")
    make.add_argument("--no-progress", action="store_true", help="no progress bars")
    from .evaluation.methods import DEFAULT_METHODS, METHODS

    evaluate = commands.add_parser(
        "evaluate", help="S1, S1+IR, the IR oracles and AniPose on a dataset file: table, CSV and plots"
    )
    evaluate.add_argument("dataset", help="an HDF5 dataset with ground truth (metapose-geom make-dataset)")
    evaluate.add_argument("--cameras", type=int, nargs="+", default=[2, 3, 4], help="camera counts (default 2 3 4)")
    evaluate.add_argument("--frames", type=int, default=None, help="the first N frames (default: all)")
    evaluate.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS),
                          metavar="METHOD", help=f"methods, from {' '.join(METHODS)} (default: all but the "
                          "s2-ablation-* ones)")
    evaluate.add_argument("--stage2-ablations", default=None, metavar="DIR",
                          help="folder of the stage-2 ablation weights, for the s2-ablation-* methods "
                          "(python/train_ablations.py)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of AniPose's perturbed start (default 0)")
    evaluate.add_argument("--subsets", choices=["first", "all"], default="first",
                          help="the first k cameras, or every k-subset averaged (default first)")
    evaluate.add_argument("--anipose-frames", type=int, default=None,
                          help="AniPose rows on the first N frames only (default: all frames)")
    evaluate.add_argument("--anipose-batch", type=int, default=100,
                          help="most consecutive frames sharing their cameras adjusted together (default 100)")
    evaluate.add_argument("--anipose-extrinsics-only", action="store_true",
                          help="AniPose refines the extrinsics only (default: also focal length and k1)")
    evaluate.add_argument("--workers", type=int, default=1, help="processes for AniPose (default 1)")
    evaluate.add_argument("--threads", type=int, default=1,
                          help="solver threads while timing (default 1: per-core times; 0: all cores)")
    evaluate.add_argument("--out", default="metapose-evaluation", help="folder for the table, CSV and plots")
    keep = evaluate.add_mutually_exclusive_group()
    keep.add_argument("--cache", default=None,
                      help="file keeping AniPose's results, so an interrupted run resumes (default: OUT/anipose-cache.bin)")
    keep.add_argument("--no-cache", action="store_true", help="keep no AniPose results (solve and time every frame)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("--skip-bad-frames", action="store_true",
                          help="leave out frames that cannot be read or hold NaN, and count them (default: stop)")
    from .solver.methods import lookup, method_names

    weak_methods = [name for name in method_names() if not lookup(name).takes_cameras]
    solve = commands.add_parser(
        "solve", help="3D poses and weak cameras of a capture (OpenPose/Pose2Sim JSON folders or an .npz): "
                      "TRC, CSV, cameras and a figure",
    )
    solve.add_argument("input", help="a folder with one folder of per-frame JSON files per camera, or an .npz")
    solve.add_argument("--out", required=True, help="folder for " + ", ".join(SOLVE_OUTPUTS))
    solve.add_argument("--method", default="ir", choices=weak_methods,
                       help=f"solver method, from {' '.join(weak_methods)} (default ir)")
    solve.add_argument("--weights", default=None, metavar="PATH",
                       help="--method metapose: a stage-2 .safetensors weights file (default: the shipped weights)")
    solve.add_argument("--skeleton", default=None,
                       help="the detector's landmark set: body25, coco17, halpe26, blazepose33, h36m17 or an alias "
                            "(default: body25 for JSON, the file's 'skeleton' field for .npz)")
    solve.add_argument("--subject-height", type=float, default=None, metavar="M",
                       help="the subject's height in metres, which scales the written poses (default 1.75, "
                            "with a warning)")
    solve.add_argument("--fps", type=float, default=None, help="frames per second (default: the input's, else 30)")
    solve.add_argument("--person", default="track",
                       help="JSON with several people: 'track' (default: the most confident, then the nearest to "
                            "the previous choice) or the index in each file's people list")
    solve.add_argument("--keypoints", default=None, metavar="FIELD", help=".npz: the keypoints field (default keypoints)")
    solve.add_argument("--confidences", default=None, metavar="FIELD",
                       help=".npz: the confidences field (default confidences)")
    guesses = solve.add_mutually_exclusive_group()
    guesses.add_argument("--mono3d", default=None, metavar="FIELD",
                         help=".npz: the monocular 3D field (default mono3d, used when present)")
    guesses.add_argument("--no-mono3d", action="store_true", help=".npz: ignore monocular 3D guesses")
    solve.add_argument("--threads", type=int, default=0, help="solver threads (default: one per core)")
    solve.add_argument("--no-progress", action="store_true", help="no progress bar")
    calib = commands.add_parser(
        "calibrate", help="a fixed rig's perspective cameras from the person it filmed (input as solve): anipose "
                          "or Pose2Sim TOML and a figure",
    )
    calib.add_argument("input", help="a folder with one folder of per-frame JSON files per camera, or an .npz")
    calib.add_argument("--out", required=True, metavar="CALIB.toml",
                       help="the calibration file to write; the figure goes beside it (.png)")
    calib.add_argument("--format", default="anipose", choices=("anipose", "pose2sim"),
                       help="anipose (aniposelib's CameraGroup TOML) or pose2sim (Calib.toml) (default anipose)")
    calib.add_argument("--subject-height", type=float, default=None, metavar="M",
                       help="the subject's height in metres, which sets the scale (default 1.75, with a warning)")
    calib.add_argument("--camera-distance", nargs=3, default=None, metavar=("CAM_A", "CAM_B", "M"),
                       help="a measured distance between two cameras' centres, which sets the scale instead")
    calib.add_argument("--intrinsics", default=None, metavar="FILE",
                       help="a calibration TOML (anipose or Pose2Sim) with the cameras' known intrinsics: only the "
                            "extrinsics are solved")
    calib.add_argument("--distortion", default="auto", choices=("auto", "none", "k1", "k1k2"),
                       help="radial distortion to fit (default auto: k1 when the keypoints reach far enough from "
                            "the image centre)")
    calib.add_argument("--principal-point", default="centre", choices=("centre", "free"),
                       help="keep the principal point at the image centre (default) or adjust it")
    calib.add_argument("--max-frames", type=int, default=300, metavar="N",
                       help="use at most N frames, evenly spread over the capture (default 300; 0: all)")
    calib.add_argument("--image-size", type=float, nargs=2, default=None, metavar=("W", "H"),
                       help="every camera's image size in pixels, when the input does not say (JSON folders)")
    calib.add_argument("--skeleton", default=None, help="the detector's landmark set (as solve)")
    calib.add_argument("--fps", type=float, default=None, help="frames per second (default: the input's)")
    calib.add_argument("--person", default="track", help="JSON with several people: as solve")
    calib.add_argument("--keypoints", default=None, metavar="FIELD", help=".npz: the keypoints field")
    calib.add_argument("--confidences", default=None, metavar="FIELD", help=".npz: the confidences field")
    calib_guesses = calib.add_mutually_exclusive_group()
    calib_guesses.add_argument("--mono3d", default=None, metavar="FIELD", help=".npz: the monocular 3D field")
    calib_guesses.add_argument("--no-mono3d", action="store_true", help=".npz: ignore monocular 3D guesses")
    calib.add_argument("--threads", type=int, default=0, help="solver threads (default: one per core)")
    calib.add_argument("--no-progress", action="store_true", help="no progress bars")
    stacked_methods = [name for name in method_names() if lookup(name).stacked]
    solve_data = commands.add_parser(
        "solve-dataset", help="every frame of a dataset file on a Dask cluster (a local one by default) into a "
                              "solution file; resumes if interrupted",
    )
    solve_data.add_argument("input", metavar="IN.h5", help="a dataset file (make-dataset, or your own)")
    solve_data.add_argument("--out", required=True, metavar="OUT.h5",
                            help="the solution file (keys and METHOD_pose3d, _x, _objective, ...)")
    solve_data.add_argument("--scheduler", default=None, metavar="ADDRESS",
                            help="a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    solve_data.add_argument("--workers", type=int, default=None,
                            help="local cluster: worker processes of one thread (default: one per core)")
    solve_data.add_argument("--method", default="ir", choices=stacked_methods,
                            help=f"solver method, from {' '.join(stacked_methods)} (default ir)")
    solve_data.add_argument("--options", nargs="+", default=None, metavar="NAME=VALUE",
                            help="the method's options: NAME=VALUE items (steps=50 weights=model.safetensors) or "
                                 "one JSON object")
    solve_data.add_argument("--chunk", type=int, default=1024, help="frames per task and per commit (default 1024)")
    solve_data.add_argument("--threads", type=int, default=1,
                            help="solver threads per task (default 1: a worker is one core)")
    solve_data.add_argument("--retries", type=int, default=3, help="times a failing task is run again (default 3)")
    solve_data.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .evaluation.capture import CAPTURE_METHODS

    capture_methods = [method.label for method in CAPTURE_METHODS]
    capture = commands.add_parser(
        "evaluate-capture", help="every method on a real capture's raw detections against its pseudo ground truth"
    )
    capture.add_argument("capture", help="an .npz laid out as ../shared/data/pose2sim_single_person.npz")
    capture.add_argument("--out", default="metapose-capture", help="folder for capture.md, capture.csv, capture.png")
    capture.add_argument("--methods", nargs="+", default=None, choices=capture_methods, metavar="METHOD",
                         help=f"rows, from {' '.join(capture_methods)} (default: all)")
    capture.add_argument("--keypoints", default="blazepose_keypoints", metavar="FIELD")
    capture.add_argument("--confidences", default="blazepose_visibility", metavar="FIELD")
    capture.add_argument("--mono3d", default="blazepose_world", metavar="FIELD")
    capture.add_argument("--skeleton", default="blazepose33", help="the detector's landmark set (default blazepose33)")
    capture.add_argument("--threads", type=int, default=1, help="solver threads (default 1: per-core times)")
    capture.add_argument("--no-progress", action="store_true", help="no progress bars")
    from .stage2.config import INPUT_NAMES

    trainer = commands.add_parser(
        "train", help="train stage 2 from dataset files' 2D labels: weights, log, curves (resumes if interrupted)"
    )
    trainer.add_argument("data", nargs="+", metavar="DATA.h5", help="training dataset files (make-dataset)")
    trainer.add_argument("--out", required=True,
                         help="folder for stage2.safetensors, log.csv, curves.png, checkpoint.pt")
    # every recipe option defaults to None: TrainConfig's own default then applies (held there only)
    recipe = lambda *names, **kwargs: trainer.add_argument(*names, default=None, **kwargs)  # noqa: E731
    recipe("--epochs", type=int, help="epochs per stage")
    recipe("--examples-per-epoch", type=int, help="examples per epoch")
    recipe("--batch-size", type=int, help="examples per batch")
    recipe("--lr", type=float, help="Adam learning rate at the start of each stage")
    recipe("--lr-schedule", choices=["cosine", "constant"], help="per-stage schedule")
    recipe("--lr-min", type=float, help="final learning rate of the cosine")
    recipe("--stages", type=int, help="most stages, each kept only if it improves")
    recipe("--spec", help="per-camera layers (ModelConfig.spec), e.g. 256,256,ccat,256")
    recipe("--pose-head", type=int, nargs="+", help="pose head widths")
    recipe("--kind", choices=["equivariant", "flat"], help="equivariant, or the flat ablation (--num-cameras)")
    recipe("--num-cameras", type=int, help="a flat model's camera count")
    recipe("--inputs", nargs="+", metavar="NAME",
           help=f"input parts, from {' '.join(n for n in INPUT_NAMES if n != 'bones')}")
    recipe("--bone-input", action="store_true", help="give the model the reference bone lengths")
    recipe("--loss", nargs="+", metavar="NAME=W", help="loss weights, names fwd objective teacher bone")
    recipe("--select", choices=["fwd", "objective"], help="validation criterion choosing epochs and stages (never 3D)")
    recipe("--cameras", type=int, nargs=2, metavar=("MIN", "MAX"), help="camera-subset sizes per example")
    recipe("--val-frames", type=int, help="frames held out for validation (the same indices in every file)")
    recipe("--seed", type=int, help="seed of every random choice")
    recipe("--threads", type=int, help="torch and solver threads (0: one per core)")
    recipe("--standardise-examples", type=int, help="examples the input standardisation is measured on")
    recipe("--teacher-cache", type=int, help="most IR solutions kept for the teacher loss")
    trainer.epilog = ("Options left out take TrainConfig's defaults, the recipe of the shipped weights "
                      "(python -c 'from metapose_geom.nn.train import TrainConfig; help(TrainConfig)').")
    trainer.add_argument("--no-resume", action="store_true", help="start over instead of continuing OUT/checkpoint.pt")
    trainer.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "selfcheck":
        return 1 if selfcheck(args.seed) else 0
    if args.command == "demo":
        from .datasets.files import check_output_folder
        from .demo import run_demo
        from .geometry import set_num_threads

        problem = _out_of_range(args, (("frames", 1, None), ("cameras", 2, 8), ("seed", 0, MAX_CLI_SEED),
                                       ("threads", 0, MAX_CLI_THREADS)))
        try:
            if problem:
                raise ValueError(problem)
            check_output_folder(args.out, "--out")
            set_num_threads(args.threads)
            run_demo(frames=args.frames, cameras=args.cameras, seed=args.seed, out=args.out)
        except (ValueError, OSError) as error:
            print(f"metapose-geom demo: {_one_line(error)}", file=sys.stderr)
            return 2
        return 0
    if args.command == "make-dataset":
        return make_dataset_command(args, parser)
    if args.command == "evaluate":
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return evaluate_command(args, parser)
    if args.command == "solve":
        return solve_command(args, parser)
    if args.command == "train":
        return train_command(args, parser)
    if args.command == "solve-dataset":
        return solve_dataset_command(args, parser)
    if args.command == "calibrate":
        return calibrate_command(args, parser)
    if args.command == "evaluate-capture":
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return evaluate_capture_command(args, parser)
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
