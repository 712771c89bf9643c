"""Turn a pytest-benchmark JSON from ``benchmarks/test_kernels.py`` or ``test_refiner.py`` into Markdown tables.

Usage::

    python benchmarks/report.py benchmarks/results/kernels.json
    python benchmarks/report.py benchmarks/results/refiner.json
    python benchmarks/report.py benchmarks/results/baselines.json
    python benchmarks/report.py benchmarks/results/stage2.json
    python benchmarks/report.py benchmarks/results/device.json

Prints the machine summary, then for the kernels one row per (kernel, items) with the numpy and
core medians and their ratio numpy/core (above 1: the core is faster), and one row per kernel of
the thread group with the 1 -> 2 thread speed-up of the core. Rows where the core is slower than
numpy are marked. For the refiner, one row per implementation with the median time per frame
(median of a whole-batch call / frames), its ratio to the core on one thread (above 1: slower
than the core) and the core's 1 -> 2 thread speed-up, checked against design.md's target, then
the core's time per frame over camera counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_items(items: int) -> str:
    exponent = len(str(items)) - 1
    return f"1e{exponent}" if items == 10**exponent else str(items)


def _median_and_rounds(bench: dict[str, Any]) -> tuple[float, int, float]:
    stats = bench["stats"]
    return stats["median"], stats["rounds"], stats["iqr"]


def _extra_values(data: dict[str, Any], key: str) -> list[Any]:
    """``extra_info[key]`` of every benchmark that recorded it."""
    return [b["extra_info"][key] for b in data.get("benchmarks", []) if key in b.get("extra_info", {})]


def machine_summary(data: dict[str, Any]) -> list[str]:
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {})
    numpy = info.get("numpy", {})
    cores = info.get("cores", {})
    load = info.get("load_average", {})
    lines = [
        f"- date: {data.get('datetime', '?')}",
        f"- CPU: {cpu.get('brand_raw', info.get('processor', '?'))}; cores: {cores.get('os_cpu_count', '?')} "
        f"(usable {cores.get('usable', '?')})",
        f"- Python {info.get('python_version', '?')}, numpy {numpy.get('version', '?')}, "
        f"metapose_geom {info.get('metapose_geom', {}).get('version', '?')}",
    ]
    if load:
        def fmt(values: Any) -> str:
            return " / ".join(f"{v:.2f}" for v in values) if values else "?"

        lines.append(f"- load average (1/5/15 min) at start: {fmt(load.get('at_start'))}; at end: {fmt(load.get('at_end'))}")
    seen = _extra_values(data, "load_average_1min_at_start")
    if seen:
        lines.append(f"- 1-min load average at the start of each benchmark: {min(seen):.2f} to {max(seen):.2f}")
    other = _extra_values(data, "other_cpu_cores")
    if other:
        lines.append(
            f"- CPU used by other processes during each benchmark: {min(other):.2f} to {max(other):.2f} cores "
            f"(median {sorted(other)[len(other) // 2]:.2f}) of {cores.get('os_cpu_count', '?')}"
        )
    torch = info.get("torch")
    if torch:
        lines.append(f"- torch {torch.get('version', '?')} (default threads {torch.get('default_threads', '?')})")
    reference = info.get("numpy_reference", {})
    has_kernels = any(b.get("extra_info", {}).get("kind") in ("kernel", "threads") for b in data.get("benchmarks", []))
    if reference and has_kernels:
        sources = defaultdict(list)
        for kernel, source in reference.get("kernels", {}).items():
            sources[source].append(kernel)
        for source, kernels in sources.items():
            lines.append(f"- numpy reference from `{source}`: {', '.join(kernels)}")
    return lines


def _other_cpu(bench: dict[str, Any] | None) -> str:
    """CPU used by other processes while the benchmark ran, in cores (test_kernels.py records it)."""
    value = (bench or {}).get("extra_info", {}).get("other_cpu_cores")
    return "-" if value is None else f"{value:.2f}"


def kernel_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    rows: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    order: list[tuple[str, int]] = []
    for bench in benchmarks:
        extra = bench.get("extra_info", {})
        if extra.get("kind") != "kernel":
            continue
        key = (extra["kernel"], extra["items"])
        if key not in rows:
            order.append(key)
        rows[key][extra["implementation"]] = bench
    lines = [
        "| kernel | items | numpy median | core median (1 thread) | ratio numpy/core | rounds numpy / core "
        "| other CPU, cores (numpy / core) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    slower = []
    for kernel, items in order:
        pair = rows[(kernel, items)]
        numpy = _median_and_rounds(pair["numpy"]) if "numpy" in pair else None
        core = _median_and_rounds(pair["core"]) if "core" in pair else None
        ratio = numpy[0] / core[0] if numpy and core else None
        ratio_text = "-" if ratio is None else f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"
        if ratio is not None and ratio < 1:
            ratio_text += " **(core slower)**"
            slower.append(f"{kernel} at {format_items(items)}")
        lines.append(
            f"| {kernel} | {format_items(items)} | {format_seconds(numpy and numpy[0])} | "
            f"{format_seconds(core and core[0])} | {ratio_text} | "
            f"{numpy[1] if numpy else '-'} / {core[1] if core else '-'} | "
            f"{_other_cpu(pair.get('numpy'))} / {_other_cpu(pair.get('core'))} |"
        )
    if slower:
        lines += ["", f"Core slower than numpy: {'; '.join(slower)}."]
    return lines


def thread_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    rows: dict[tuple[str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    order: list[tuple[str, int]] = []
    for bench in benchmarks:
        extra = bench.get("extra_info", {})
        if extra.get("kind") != "threads":
            continue
        key = (extra["kernel"], extra["items"])
        if key not in rows:
            order.append(key)
        rows[key][extra["core_threads"]] = bench
    if not order:
        return []
    lines = [
        "| kernel | items | core median, 1 thread | core median, 2 threads | speed-up 1 -> 2 | other CPU, cores (1 / 2) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kernel, items in order:
        one = rows[(kernel, items)].get(1)
        two = rows[(kernel, items)].get(2)
        m1 = one["stats"]["median"] if one else None
        m2 = two["stats"]["median"] if two else None
        speedup = f"{m1 / m2:.2f}x" if m1 and m2 else "-"
        loads = " / ".join(_other_cpu(b) for b in (one, two))
        lines.append(
            f"| {kernel} | {format_items(items)} | {format_seconds(m1)} | {format_seconds(m2)} | {speedup} | {loads} |"
        )
    return lines


#: design.md section 6: the refiner's target, ms per frame per core (4 cameras, K = 4, 100 steps)
REFINER_TARGET_MS_PER_CORE = 0.1
_REFINER_ORDER = ("core, 1 thread", "core, 2 threads", "numpy", "torch, 1 thread", "solve_batch, 1 thread")


def _per_frame_ms(bench: dict[str, Any]) -> float:
    return bench["stats"]["median"] / bench["extra_info"]["frames"] * 1e3


def refiner_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    rows = {b["extra_info"]["implementation"]: b for b in benchmarks if b.get("extra_info", {}).get("kind") == "refiner"}
    if not rows:
        return []
    order = [name for name in _REFINER_ORDER if name in rows] + sorted(set(rows) - set(_REFINER_ORDER))
    some = rows[order[0]]["extra_info"]
    core1 = rows.get("core, 1 thread")
    core2 = rows.get("core, 2 threads")
    base = _per_frame_ms(core1) if core1 else None
    speedup = _per_frame_ms(core1) / _per_frame_ms(core2) if core1 and core2 else None
    lines = [
        f"{some['frames']} frames, {some['cameras']} cameras, {some['joints']} joints, K = {some['components']}, "
        f"{some['steps']} Adam steps; ms per frame = median of a whole-batch call / {some['frames']}.",
        "",
        "| implementation | ms per frame (median) | ratio to core 1 thread | speed-up 1 -> 2 threads | rounds | IQR per frame |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        bench = rows[name]
        ms = _per_frame_ms(bench)
        ratio = "-" if base is None else f"{ms / base:.2f}x" if ms / base < 10 else f"{ms / base:.1f}x"
        iqr = bench["stats"]["iqr"] / bench["extra_info"]["frames"] * 1e3
        label = f"{name} (context: stage 1 + refine + solutions)" if bench["extra_info"].get("context") else name
        lines.append(
            f"| {label} | {ms:.4g} | {ratio} | {f'{speedup:.2f}x' if name == 'core, 2 threads' and speedup else '-'} | "
            f"{bench['stats']['rounds']} | {iqr:.2g} |"
        )
    if base is not None:
        verdict = "met" if base <= REFINER_TARGET_MS_PER_CORE else "**not met**"
        lines += ["", f"Target (design.md section 6): at most {REFINER_TARGET_MS_PER_CORE} ms per frame per core: "
                  f"core on 1 thread {base:.4g} ms -> {verdict}."]
        if speedup is not None:
            per_core = _per_frame_ms(core2) * 2
            lines.append(f"Near-linear scaling to 2 threads: speed-up {speedup:.2f}x (efficiency {speedup / 2:.0%}, "
                         f"{per_core:.4g} ms per frame per core on 2 threads).")
    return lines


def refiner_cameras_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    rows = sorted(
        (b for b in benchmarks if b.get("extra_info", {}).get("kind") == "refiner_cameras"),
        key=lambda b: b["extra_info"]["cameras"],
    )
    if not rows:
        return []
    lines = [
        "| cameras | ms per frame (median) | ms per frame per camera | rounds |",
        "|---:|---:|---:|---:|",
    ]
    for bench in rows:
        ms = _per_frame_ms(bench)
        cameras = bench["extra_info"]["cameras"]
        lines.append(f"| {cameras} | {ms:.4g} | {ms / cameras:.3g} | {bench['stats']['rounds']} |")
    return lines


def _ratio_table(benchmarks: list[dict[str, Any]], kind: str, header: list[str], cells,
                 reference: str = "ir") -> list[str]:
    """The rows of ``kind``: per group, each implementation (``reference`` first, IR unless said)
    as ``cells(group, name, bench, ms per frame, ratio to the reference's)``, under ``header``."""
    rows = [b for b in benchmarks if b.get("extra_info", {}).get("kind") == kind]
    if not rows:
        return []
    lines = list(header)
    for group in dict.fromkeys(b["group"] for b in rows):
        members = {b["extra_info"]["implementation"]: b for b in rows if b["group"] == group}
        base = _per_frame_ms(members[reference]) if reference in members else None
        for name in sorted(members, key=lambda name: (name != reference, name)):
            bench = members[name]
            ms = _per_frame_ms(bench)
            lines.append(cells(group, name, bench, ms, "-" if base is None else f"{ms / base:.3g}x"))
    return lines


def baseline_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    """test_baselines.py: per group, each method's ms per frame and its ratio to IR's."""
    return _ratio_table(
        benchmarks, "baseline",
        ["| workload | method | start | ms per frame (median) | ratio to IR | rounds |", "|---|---|---|---:|---:|---:|"],
        lambda group, name, bench, ms, ratio: (f"| {group} | {name} | {bench['extra_info'].get('start', '-')} | "
                                               f"{ms:.4g} | {ratio} | {bench['stats']['rounds']} |"))


def stage2_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    """test_stage2.py: per group, each implementation's ms per frame, frames per second and its
    ratio to IR's (above 1: slower than IR)."""
    return _ratio_table(
        benchmarks, "stage2",
        ["| workload | implementation | ms per frame (median) | frames / s | ratio to IR | rounds |",
         "|---|---|---:|---:|---:|---:|"],
        lambda group, name, bench, ms, ratio: (f"| {group} | {name} | {ms:.4g} | {1000.0 / ms:,.0f} | {ratio} | "
                                               f"{bench['stats']['rounds']} |"))


def _row_in_ms(group: str, name: str, bench: dict[str, Any], ms: float, ratio: str) -> str:
    """A ratio-table row: ms per frame and the whole call's median in ms."""
    return f"| {group} | {name} | {ms:.4g} | {bench['stats']['median'] * 1e3:.4g} | {ratio} | {bench['stats']['rounds']} |"


def rig_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    """test_rig.py: per group, the static-rig refiner's ms per frame and its ratio to the per-frame
    refiner's on the same frames (above 1: slower than IR)."""
    return _ratio_table(
        benchmarks, "rig",
        ["| workload | implementation | ms per frame (median) | total ms (median) | ratio to IR | rounds |",
         "|---|---|---:|---:|---:|---:|"],
        _row_in_ms)


def calibration_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    """test_calibration.py: per group, each calibration's time (ms per frame and in all) and its
    ratio to aniposelib's bundle adjustment on the same keypoints (below 1: faster)."""
    return _ratio_table(
        benchmarks, "calibration",
        ["| workload | implementation | ms per frame (median) | total s (median) | ratio to aniposelib | rounds |",
         "|---|---|---:|---:|---:|---:|"],
        lambda group, name, bench, ms, ratio: (f"| {group} | {name} | {ms:.4g} | {bench['stats']['median']:.3g} | "
                                               f"{ratio} | {bench['stats']['rounds']} |"),
        reference="aniposelib")


def device_table(benchmarks: list[dict[str, Any]]) -> list[str]:
    """test_device.py: per group, the torch device path's ms per frame and its ratio to the
    compiled core's on the same frames (above 1: slower than the core)."""
    return _ratio_table(
        benchmarks, "device",
        ["| workload | implementation | ms per frame (median) | total ms (median) | ratio to the core | rounds |",
         "|---|---|---:|---:|---:|---:|"],
        _row_in_ms,
        reference="core")


def render(data: dict[str, Any]) -> str:
    benchmarks = data.get("benchmarks", [])
    parts = ["### Machine", "", *machine_summary(data)]
    kernels = kernel_table(benchmarks)
    refiner = refiner_table(benchmarks)
    baselines = baseline_table(benchmarks)
    stage2 = stage2_table(benchmarks)
    rig = rig_table(benchmarks)
    calibration = calibration_table(benchmarks)
    device = device_table(benchmarks)
    if len(kernels) > 2 or not (refiner or baselines or stage2 or rig or calibration or device):  # header only: no kernel rows in this JSON
        parts += ["", "### Kernels: numpy vs compiled core", "", *kernels]
    threads = thread_table(benchmarks)
    if threads:
        parts += ["", "### Threads: compiled core, 1 vs 2 threads", "", *threads]
    if refiner:
        parts += ["", "### Iterative refiner: compiled core vs numpy and torch", "", *refiner]
    cameras = refiner_cameras_table(benchmarks)
    if cameras:
        parts += ["", "### Iterative refiner over cameras: compiled core, 1 thread", "", *cameras]
    if baselines:
        parts += ["", "### MetaPose's refiner against aniposelib (public API, 1 thread)", "", *baselines]
    if stage2:
        parts += ["", "### Stage 2 (numpy inference) next to the refiner", "", *stage2]
    if rig:
        parts += ["", "### Static-rig refiner next to the per-frame refiner", "", *rig]
    if calibration:
        parts += ["", "### Calibration from people against aniposelib's bundle adjustment", "", *calibration]
    if device:
        parts += ["", "### Torch device path against the compiled core", "", *device]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_path", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    args = parser.parse_args(argv)
    data = json.loads(args.json_path.read_text())
    sys.stdout.write(render(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
