"""Shortcut audits: where does a model's evidence sit across a whole data set, class by class?

    from saliscope.audit import AuditSettings, run_audit
    outcome = run_audit("xrays/", model, out="audit-out", settings=AuditSettings(method="gradcam"))
    for verdict in outcome.verdicts:
        print(verdict.line)

A model that learned a shortcut — a hospital's marker, a watermark, a ruler — puts its evidence for a
class on the cue, wherever the real content is. The audit explains every image of an ImageFolder data
set, measures how much of each saliency map lies in the border, the corners, a region the user names,
and a fixed spot shared by a class's images, and words one verdict per class. The per-batch step,
:func:`audit_batch`, is a pure function: the seam for running the same audit on a distributed engine.
"""

from .batch import BatchResult, audit_batch, mass_view
from .dataset import Folder, Item, scan_image_folder
from .findings import ClassAnalysis, analyse
from .regions import Region, standard_regions
from .runner import AuditOutcome, AuditSettings, records_of, run_audit
from .stats import AuditStats, Welford
from .store import AuditStore
from .verdicts import ClassVerdict, RegionFinding, Thresholds, judge

__all__ = [
    "AuditOutcome",
    "AuditSettings",
    "AuditStats",
    "AuditStore",
    "BatchResult",
    "ClassAnalysis",
    "ClassVerdict",
    "Folder",
    "Item",
    "Region",
    "RegionFinding",
    "Thresholds",
    "Welford",
    "analyse",
    "audit_batch",
    "judge",
    "mass_view",
    "records_of",
    "run_audit",
    "scan_image_folder",
    "standard_regions",
]
