"""OpenPose / Pose2Sim JSON folders: one folder per camera, one JSON file per frame.

The layout OpenPose writes with ``--write_json`` and Pose2Sim reads and writes (``pose/cam01_json/``
...): each file holds ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...], ...}, ...]}``
with the landmarks of the detector's model (BODY_25 for OpenPose; COCO-17 or Halpe-26 for the
RTMPose models Pose2Sim runs) in pixels, and ``c`` the landmark's confidence (0 for a landmark not
found, whose x and y are then 0).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .._checks import check_int, check_number
from ..skeletons import LANDMARK_SETS
from .capture import Capture, _landmarks

F64 = NDArray[np.float64]

__all__ = ["read_openpose"]

_NUMBER = re.compile(r"\d+")


def _frame_number(path: Path) -> int:
    """The last run of digits in the file name: ``cam01_000000000012_keypoints.json`` -> 12."""
    found = _NUMBER.findall(path.stem)
    if not found:
        raise ValueError(f"{path}: no frame number in the file name (expected e.g. frame_000012.json)")
    return int(found[-1])


def _camera_files(folder: Path) -> tuple[list[Path], list[int]]:
    """A camera folder's JSON files in frame order, with their frame numbers."""
    files = [path for path in folder.iterdir() if path.suffix.lower() == ".json" and path.is_file()]
    numbered = sorted((_frame_number(path), path) for path in files)
    numbers = [number for number, _ in numbered]
    for previous, current in zip(numbered, numbered[1:]):
        if previous[0] == current[0]:
            raise ValueError(f"{folder}: files {previous[1].name} and {current[1].name} have the same frame number "
                             f"{current[0]}")
    return [path for _, path in numbered], numbers


def _people(path: Path) -> list[F64 | None]:
    """A frame file's people in the file's order, each (N, 3) ``[x, y, confidence]``, or None for
    an entry with no landmark found (all confidences 0, or an empty list: a placeholder, as
    Pose2Sim's person association writes them)."""
    try:
        with path.open("rb") as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed JSON ({error})") from None
    people = content.get("people") if isinstance(content, dict) else None
    if not isinstance(people, list):
        raise ValueError(f"{path}: expected a JSON object with a 'people' list")
    found = []
    for i, person in enumerate(people):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(flat, list):
            raise ValueError(f"{path}: people[{i}] has no 'pose_keypoints_2d' list")
        if not flat:
            found.append(None)
            continue
        try:
            values = np.array(flat, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: people[{i}].pose_keypoints_2d holds values that are not numbers") from None
        if values.ndim != 1 or len(values) % 3:
            raise ValueError(f"{path}: people[{i}].pose_keypoints_2d has {len(values)} values, not [x, y, c] triples")
        values = values.reshape(-1, 3)
        if not np.isfinite(values).all() or (values[:, 2] < 0).any():
            raise ValueError(f"{path}: people[{i}].pose_keypoints_2d has non-finite values or negative confidences")
        found.append(values if (values[:, 2] > 0).any() else None)
    return found


def _distance(person: F64, previous: F64) -> float:
    """How far a person is from the previous choice, pixels: the median distance over the landmarks
    found in both, or the distance between the centroids of their found landmarks."""
    both = (person[:, 2] > 0) & (previous[:, 2] > 0)
    if both.any():
        return float(np.median(np.linalg.norm(person[both, :2] - previous[both, :2], axis=-1)))
    here, there = person[person[:, 2] > 0, :2].mean(axis=0), previous[previous[:, 2] > 0, :2].mean(axis=0)
    return float(np.linalg.norm(here - there))


def _choose(frames: list[list[F64 | None]], person: str | int) -> tuple[list[F64 | None], int]:
    """One person per frame (None: nobody), and the number of frames with several people."""
    chosen: list[F64 | None] = []
    several = 0
    previous = None
    for entries in frames:
        people = [p for p in entries if p is not None]
        several += len(people) > 1
        if isinstance(person, int):
            pick = entries[person] if person < len(entries) else None  # the file's own index
        elif not people:
            pick = None
        elif previous is None:
            pick = max(people, key=lambda p: float(p[:, 2].sum()))
        else:
            pick = min(people, key=lambda p: _distance(p, previous))
        chosen.append(pick)
        previous = pick if pick is not None else previous
    return chosen, several


def read_openpose(
    root: str | os.PathLike,
    skeleton: str = "body25",
    person: str | int = "track",
    fps: float | None = None,
    image_size=None,
) -> Capture:
    """A folder of per-camera OpenPose / Pose2Sim JSON folders -> a :class:`Capture` (C, F, N).

    ``root`` holds one sub-folder per camera (sub-folders without JSON files are ignored); the
    sub-folders' sorted names are the camera names. Each holds one JSON file per frame, in the
    order of the last number in the file names (``cam01_000000000012_keypoints.json`` is frame 12);
    the i-th file of every camera is frame i, so every camera needs the same number of files.
    A landmark with confidence 0 is missing (NaN), and a file with no people means that camera saw
    nobody in that frame.

    Several people in a frame: one is kept per camera, consistently across frames. With
    ``person="track"`` (the default) it is the most confident (the highest total confidence) in
    the camera's first frame with anyone, then in each frame the one nearest the previous choice
    (the median distance over the landmarks found in both, in pixels); a UserWarning gives the
    number of frames that had several people. ``person=i`` keeps ``people[i]`` in every frame
    (after Pose2Sim's person association, for instance), nobody where there is no such entry.

    Args:
        root: the folder of camera folders.
        skeleton: the detector's landmark set: ``"body25"`` (OpenPose's default), ``"coco17"``,
            ``"halpe26"`` (Pose2Sim's RTMPose default), ``"blazepose33"``, ``"h36m17"``, or an
            alias (:func:`~metapose_geom.skeletons.skeleton_map`); the files' landmark count must match it.
        person: ``"track"`` or a person index (see above).
        fps: frames per second, or None (unknown: JSON files do not say).
        image_size: (C, 2) ``[width, height]`` pixels, or None (unknown).

    Confidences above 1 (some detectors' scores) are clipped to 1 with a UserWarning.

    Raises:
        ValueError: a missing folder, no camera folder with JSON files, no detections at all,
            cameras with different frame counts (naming them), malformed JSON (naming the file),
            a landmark count that differs between files or from the skeleton's, or an unknown skeleton.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    landmarks = _landmarks(skeleton)
    if isinstance(person, str):
        if person != "track":
            raise ValueError(f"person: expected 'track' or a person index >= 0, got {person!r}")
    else:
        person = check_int(person, "person", 0)
    if fps is not None:
        fps = check_number(fps, "fps", 0.0, low_open=True)
    cameras = {}
    for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
        files, numbers = _camera_files(sub)
        if files:
            cameras[sub.name] = (files, numbers)
    if not cameras:
        raise ValueError(f"{folder}: no camera folders with JSON files (expected {folder}/<camera>/<frame>.json)")
    counts = {name: len(files) for name, (files, _) in cameras.items()}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise ValueError(f"{folder}: cameras have different frame counts ({listing})")
    if len(cameras) < 2:
        raise ValueError(f"{folder}: one camera folder with JSON files ({next(iter(cameras))}); at least two are needed")

    people = {name: [_people(path) for path in files] for name, (files, _) in cameras.items()}
    width, first = 0, None
    for name, frames in people.items():
        for path, frame in zip(cameras[name][0], frames):
            for found in frame:
                if found is None:
                    continue
                if first is None:
                    width, first = len(found), path
                elif len(found) != width:
                    raise ValueError(f"{path}: {len(found)} landmarks per person, but {first.name} has {width}")
    if first is None:
        raise ValueError(f"{folder}: no detections (every JSON file has an empty 'people' list)")
    if width != landmarks.num_landmarks:
        matches = [name for name, other in LANDMARK_SETS.items() if other.num_landmarks == width]
        hint = f"; pass skeleton={' or '.join(repr(m) for m in matches)}" if matches else ""
        raise ValueError(f"{folder}: the detections have {width} landmarks per person, but skeleton "
                         f"{landmarks.name!r} has {landmarks.num_landmarks}{hint}")

    frames = next(iter(counts.values()))
    keypoints = np.full((len(cameras), frames, width, 2), np.nan)
    confidences = np.zeros((len(cameras), frames, width))
    several = {}
    for c, name in enumerate(cameras):
        chosen, several[name] = _choose(people[name], person)
        for f, pick in enumerate(chosen):
            if pick is None:
                continue
            found = pick[:, 2] > 0
            keypoints[c, f, found] = pick[found, :2]
            confidences[c, f] = pick[:, 2]
    if sum(several.values()):
        listing = ", ".join(f"{name}: {count}" for name, count in several.items() if count)
        how = ("the most confident where the camera first sees anyone, then the nearest to the previous choice"
               if person == "track" else f"people[{person}]")
        warnings.warn(f"read_openpose: several people in some frames ({listing}); kept one per frame and camera: "
                      f"{how}", stacklevel=2)
    if confidences.max() > 1.0:
        warnings.warn(f"read_openpose: confidences up to {confidences.max():.3g} clipped to 1", stacklevel=2)
        np.minimum(confidences, 1.0, out=confidences)
    numbers = [numbers for _, numbers in cameras.values()]
    same = all(other == numbers[0] for other in numbers)
    if not same:
        starts = ", ".join(f"{name} from {n[0]}" for name, (_, n) in cameras.items())
        warnings.warn(f"read_openpose: the cameras number their frames differently ({starts}); frames are matched "
                      "by their order in each folder", stacklevel=2)
    return Capture(
        keypoints, confidences, landmarks, camera_names=tuple(cameras), image_size=image_size, fps=fps,
        frame_numbers=np.array(numbers[0]) if same else None,
    )
