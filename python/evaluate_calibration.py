"""Calibration from people, measured: synthetic fixed rigs over seeds and camera counts, the real
capture against its lab calibration, and aniposelib's bundle adjustment on the same keypoints.

    python python/evaluate_calibration.py --out docs/calibration                # everything (~15 min)
    python python/evaluate_calibration.py --out /tmp/c --seeds 0 --cameras 4 --no-anipose   # a quick look

Writes calibration.md (the tables), calibration.json (every number) into --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import metapose_geom as mg
from metapose_geom.evaluation.calibration import CalibrationRow, compare_cameras, compare_with_aniposelib
from metapose_geom.geometry import PerspectiveCameras

CAPTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pose2sim_single_person.npz"


def synthetic_rows(seeds, cameras, frames, modes, anipose: bool, distortion: str = "auto") -> list[CalibrationRow]:
    rows = []
    for mode in modes:
        for count in cameras:
            for seed in seeds:
                sequence = mg.synth.make_rig_sequence(seed, num_cameras=count, frames=frames, intrinsics=mode)
                rig = f"synthetic, {mode} intrinsics, {count} cameras, seed {seed}"
                if anipose and count == 4:
                    rows += compare_with_aniposelib(sequence.capture(), sequence.cameras, rig, seed=seed,
                                                    distortion=distortion)
                    continue
                begin = time.perf_counter()
                fit = mg.rig.fit_rig(sequence.capture(), progress=False, distortion=distortion)
                rows.append(CalibrationRow(rig, "metapose-geom", compare_cameras(fit.cameras, sequence.cameras),
                                           time.perf_counter() - begin, f"distortion {fit.distortion}"))
                print(rows[-1].record(), flush=True)
    return rows


def lab_cameras(data) -> PerspectiveCameras:
    K = data["calib_K"]
    intrinsics = np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], axis=1)
    return PerspectiveCameras(data["calib_R"], data["calib_t"], intrinsics, data["calib_dist"],
                              data["image_size"].astype(np.float64))


def capture_rows(path: Path, anipose: bool, distortion: str = "auto") -> tuple[list[CalibrationRow], dict]:
    """The shared capture from its raw detections, through the public API, against the lab."""
    capture = mg.io.read_npz(path, keypoints="blazepose_keypoints", confidences="blazepose_visibility",
                             mono3d="blazepose_world", skeleton="blazepose33")
    with np.load(path) as data:
        lab = lab_cameras(data)
        truth, valid = data["truth_joints3d_h36m"], data["truth_valid_h36m"].astype(bool)
    rig = "pose2sim_single_person.npz (4 cameras, 100 frames)"
    if anipose:
        rows = compare_with_aniposelib(capture, lab, rig, distortion=distortion)
    else:
        begin = time.perf_counter()
        fit = mg.rig.fit_rig(capture, progress=False, distortion=distortion)
        rows = [CalibrationRow(rig, "metapose-geom", compare_cameras(fit.cameras, lab), time.perf_counter() - begin,
                               f"distortion {fit.distortion}")]
    # the public API end to end, and the poses it triangulates against the lab's
    begin = time.perf_counter()
    calibration = mg.calibrate(capture, subject_height=1.75, distortion=distortion, progress=False)
    seconds = time.perf_counter() - begin
    lab_calibration = mg.io.Calibration(names=capture.camera_names, image_size=lab.image_size,
                                        rotation_vector=mg.geometry.matrix_to_rodrigues(lab.rotation),
                                        translation=lab.translation, intrinsics=lab.intrinsics,
                                        distortion=lab.distortion, units="mm")
    keypoints, confidences = capture.joints
    ours = calibration.in_units("mm").triangulate(keypoints, confidences)
    theirs = lab_calibration.triangulate(keypoints, confidences)
    errors, against_truth = [], []
    for frame in range(capture.num_frames):
        keep = valid[frame] & np.isfinite(ours[frame]).all(axis=1) & np.isfinite(theirs[frame]).all(axis=1)
        if keep.sum() >= 3:
            errors.append(float(mg.metrics.pmpjpe(ours[frame][keep], theirs[frame][keep])))
            against_truth.append(float(mg.metrics.pmpjpe(ours[frame][keep], truth[frame][keep])))
    per_camera = compare_cameras(calibration.in_units("mm").cameras, lab)
    extra = {
        "calibrate_seconds": seconds,
        "pmpjpe_vs_lab_triangulation_median_mm": float(np.median(errors)),
        "pmpjpe_vs_lab_triangulation_mean_mm": float(np.mean(errors)),
        "pmpjpe_vs_pseudo_truth_median_mm": float(np.median(against_truth)),
        "per_camera": per_camera.record(list(capture.camera_names)),
        "focal_px": calibration.intrinsics[:, 0].round(1).tolist(),
        "lab_focal_px": lab.intrinsics[:, 0].round(1).tolist(),
        "distortion": calibration.metadata["distortion"],
    }
    return rows, extra


def markdown(rows: list[CalibrationRow], extra: dict | None, command: str) -> str:
    lines = [f"`{command}`", ""]
    lines += ["| rig | method | rotation error max / mean (deg) | focal error max abs (%) | centre error max / mean "
              "| seconds | note |", "|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        record = row.record()
        if row.errors is None:
            lines.append(f"| {row.rig} | {row.method} | - | - | - | {row.seconds:.1f} | {row.note} |")
            continue
        unit = "mm"
        lines.append(f"| {row.rig} | {row.method} | {record['rotation_deg_max']:.2f} / {record['rotation_deg_mean']:.2f} "
                     f"| {record['focal_percent_max_abs']:.1f} | {record['centre_max']:.0f} / {record['centre_mean']:.0f} "
                     f"{unit} | {row.seconds:.1f} | {row.note} |")
    if extra:
        lines += ["", "Real capture, `metapose_geom.calibrate` end to end (subject height 1.75 m):", ""]
        per = extra["per_camera"]
        names = [key[: -len("_rotation_deg")] for key in per if key.endswith("_rotation_deg")]
        lines += ["| camera | rotation error (deg) | focal error (%) | centre error (mm) | focal px (lab) |",
                  "|---|---:|---:|---:|---:|"]
        for name, focal, lab in zip(names, extra["focal_px"], extra["lab_focal_px"]):
            lines.append(f"| {name} | {per[name + '_rotation_deg']:.2f} | {per[name + '_focal_percent']:+.1f} | "
                         f"{per[name + '_centre']:.0f} | {focal:.0f} ({lab:.0f}) |")
        lines += ["", f"Poses triangulated with our calibration against those triangulated with the lab's: PMPJPE "
                      f"median {extra['pmpjpe_vs_lab_triangulation_median_mm']:.1f} mm, mean "
                      f"{extra['pmpjpe_vs_lab_triangulation_mean_mm']:.1f} mm; against the pseudo ground truth "
                      f"{extra['pmpjpe_vs_pseudo_truth_median_mm']:.1f} mm median. Distortion fitted: "
                      f"{extra['distortion']}; {extra['calibrate_seconds']:.1f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cameras", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--intrinsics", nargs="+", default=["ideal", "drawn"], choices=("ideal", "drawn"))
    parser.add_argument("--capture", default=str(CAPTURE))
    parser.add_argument("--no-capture", action="store_true")
    parser.add_argument("--no-anipose", action="store_true", help="skip aniposelib (4-camera rigs and the capture)")
    parser.add_argument("--distortion", default="auto", choices=("auto", "none", "k1", "k1k2"),
                        help="calibrate's distortion (default auto)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)  # the assumed subject height: errors here are scale-free
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = synthetic_rows(args.seeds, args.cameras, args.frames, args.intrinsics, not args.no_anipose, args.distortion)
    extra = None
    if not args.no_capture:
        capture, extra = capture_rows(Path(args.capture), not args.no_anipose, args.distortion)
        rows += capture
    command = "python python/evaluate_calibration.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    (out / "calibration.md").write_text(markdown(rows, extra, command))
    (out / "calibration.json").write_text(json.dumps({"rows": [row.record() for row in rows], "capture": extra,
                                                      "command": command}, indent=1))
    print((out / "calibration.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
