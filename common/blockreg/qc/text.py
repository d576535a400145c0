"""The report's key figures as a few lines of text (terminal output of ``blockreg register``,
``blockreg report`` and ``blockreg demo``)."""
from __future__ import annotations

__all__ = ["key_figures", "bound_warning"]


def _num(value, digits=3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def key_figures(report: dict) -> list[str]:
    """Lines: correlation and crispness before/after, mismatch, displacements, bound, folds."""
    s = report["summary"]
    lines = [
        f"correlation with the fixed image (median): {_num(s.get('correlation_before_median'))} "
        f"before -> {_num(s.get('correlation_after_median'))} after "
        f"({_num(s.get('frames_sampled'))} sampled frames)",
        f"crispness of the mean image: {_num(s.get('crispness_before'), 4)} -> "
        f"{_num(s.get('crispness_after'), 4)} (ratio {_num(s.get('crispness_ratio'))})",
        f"mismatch with the fixed image (median): {_num(s.get('mismatch_before_median'))} -> "
        f"{_num(s.get('mismatch_after_median'))}",
        f"largest displacement {_num(s.get('max_displacement'))} px; frames at the maxshift "
        f"bound: {_num(s.get('frames_at_bound'))}; frames that fold: "
        f"{_num(s.get('frames_with_folds'))}",
    ]
    return lines


def bound_warning(report: dict) -> str | None:
    """A warning sentence when displacements sit at the maxshift bound, else None."""
    s = report["summary"]
    if not s.get("frames_at_bound"):
        return None
    bound = report.get("bound") or {}
    frames = bound.get("frames") or []
    shown = ", ".join(str(f) for f in frames[:10]) + (", ..." if len(frames) > 10 else "")
    return (f"warning: {s['frames_at_bound']} of {s.get('frames')} frames have displacements at "
            f"the maxshift bound {bound.get('maxshift')} px (frames {shown}): the motion may be "
            "larger than searched; raise params.maxshift")
