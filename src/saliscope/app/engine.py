"""The explorer's work, apart from the page: open a photo, predict, explain, judge, compare, write the downloads.

One :class:`Explorer` serves every visitor. The model and the explainers are shared, so model work runs one
call at a time (a lock: hooks and the state guard of one call must never meet another's). Everything a
visitor makes lives in their own :class:`Session`, which the page keeps per browser tab, and every download
is written into a folder of its own: two visitors never see each other's results.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import registry
from ..core.errors import ImageError, MethodError, SaliscopeError
from ..core.explanation import Explanation
from ..core.targets import logits_of
from ..core.views import EVIDENCE, Evidence
from ..methods.base import Explainer
from ..methods.cam import CAM
from ..trust.checks import CHECKS, CheckReport, judge, measure
from ..trust.comparison import Comparison, ShownMaps, compare_methods, shown
from ..trust.thresholds import Thresholds
from ..viz import display_hint, overlay, save_json, save_npy, save_png
from ..viz.display import DisplayHint
from ..viz.panel import shrink
from .uploads import MAX_UPLOAD_BYTES, read_upload, sample_photo

DEFAULT_APP_METHODS: tuple[str, ...] = ("gradient", "gradcam", "integrated-gradients")
TOP = 5
Box = tuple[float, float, float, float]
Step = Callable[[int, int, str], None]  # (done, total, what is running now)


@dataclass(frozen=True)
class AppSettings:
    """How the explorer explains and judges.

    Attributes:
        methods: the methods ticked when the page opens (every applicable method can be ticked).
        options: the methods' options (steps, samples, seed, ...), as on the command line.
        checks: the checks whose verdicts each map shows (:data:`saliscope.trust.CHECKS`); empty: none.
        thresholds: when a check fails (and the steps of the deletion curves it runs).
        timing_runs: timed explanations per method in the measured comparison.
        device: where the model runs.
        display_side: long side, in pixels, of the maps shown on the page.
        work_side: photos larger than this on their long side are shown and written scaled down to it (the
            model still sees the photo as uploaded).
        max_upload_bytes: larger uploads are refused.
    """

    methods: tuple[str, ...] = DEFAULT_APP_METHODS
    options: registry.MethodOptions = field(default_factory=registry.MethodOptions)
    checks: tuple[str, ...] = CHECKS
    thresholds: Thresholds = field(default_factory=Thresholds)
    timing_runs: int = 1
    device: str = "cpu"
    display_side: int = 640
    work_side: int = 2048
    max_upload_bytes: int = MAX_UPLOAD_BYTES


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


@dataclass
class Session:
    """One visitor's photo and everything made from it (kept by the page, per browser tab)."""

    name: str  # "chelsea", "upload": how downloads are named
    photo: Image.Image  # RGB, at most work_side on its long side
    box: Box  # the model's square on `photo`
    x: torch.Tensor  # (1, C, H, W): the model's input
    top: list[Prediction]
    maps: dict[tuple[str, int, str | None], Explanation] = field(default_factory=dict)
    failures: dict[tuple[str, int, str | None], str] = field(default_factory=dict)
    reports: dict[tuple[str, int, str], CheckReport] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def classes(self) -> list[int]:
        return [p.index for p in self.top]

    def probability(self, cls: int) -> float | None:
        return next((p.probability for p in self.top if p.index == cls), None)


def evidence_of(choice: str | None) -> Evidence | None:
    """The page's evidence choice → ``None`` (each method's own view) or one of ``EVIDENCE``."""
    if choice in (None, "", "default"):
        return None
    if choice not in EVIDENCE:
        raise MethodError(f"unknown evidence {choice!r}", f"use one of: default, {', '.join(EVIDENCE)}")
    return choice  # type: ignore[return-value]


class Explorer:
    """The model, its explainers and the settings; every visitor's work goes through here."""

    def __init__(self, model: nn.Module, settings: AppSettings | None = None, *, model_name: str | None = None):
        self.model = model
        self.settings = settings or AppSettings()
        name = model_name or getattr(model, "name", None) or type(model).__name__
        self.model_name = "default (EfficientNet-Lite0)" if name == "default" else str(name)
        self.labels: Sequence[str] | None = getattr(model, "labels", None)
        self.lock = threading.RLock()
        self._explainers: dict[tuple[str, str | None], Explainer] = {}
        self.methods = self._applicable()
        unknown = [m for m in self.settings.methods if m not in self.methods]
        if unknown:
            raise MethodError(
                f"the method(s) {', '.join(unknown)} cannot run on this model",
                f"pick among: {', '.join(self.methods)}",
            )
        self._root = Path(tempfile.mkdtemp(prefix="saliscope-app-"))
        weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)

    # ----- methods --------------------------------------------------------------------------------------

    def _applicable(self) -> list[str]:
        from ..methods.attention import refusal

        attention = refusal(self.model) is None
        return [
            n
            for n in registry.available()
            if (attention or not registry.get(n).needs_attention) and not registry.get(n).needs_detector
        ]

    def titled_methods(self) -> list[tuple[str, str]]:
        """``(title, name)`` of every method that applies to the model."""
        return [(registry.get(n).title, n) for n in self.methods]

    def mode(self, name: str, evidence: Evidence | None) -> str | None:
        """What a method is computed for: CAMs compute the evidence asked for (negative evidence is the
        counterfactual map, not the negative part of a ReLU'd one); other methods once for every view."""
        if not isinstance(self.explainer(name, None), CAM):
            return None
        return evidence if evidence in ("negative", "signed") else "positive"

    def explainer(self, name: str, mode: str | None) -> Explainer:
        key = (name, mode)
        with self.lock:
            if key not in self._explainers:
                if name not in self.methods:
                    raise MethodError(f"unknown method {name!r}", f"pick among: {', '.join(self.methods)}")
                options = replace(self.settings.options, evidence=mode)
                made = registry.create(name, self.model, options)
                if hasattr(made, "progress"):
                    made.progress = True  # long perturbation runs report their progress
                self._explainers[key] = made
            return self._explainers[key]

    def view(self, name: str, evidence: Evidence | None) -> DisplayHint:
        return display_hint(name, evidence)

    # ----- photos -----------------------------------------------------------------------------------------

    def open(self, upload: bytes | None, sample: str | None) -> Session:
        """Read the upload (or the sample when nothing is uploaded) and predict its top-5 classes."""
        if upload:
            photo, name = read_upload(upload, max_bytes=self.settings.max_upload_bytes), "upload"
        elif sample:
            photo, name = sample_photo(sample), sample
        else:
            raise ImageError("no photo yet", "upload a photo, or pick a sample photo")
        preprocess: Any = self.model.preprocess
        x0, y0, x1, y1 = (float(v) for v in preprocess.crop_box(*photo.size))
        box = (x0, y0, x1, y1)
        x = preprocess(photo).to(self.settings.device)
        with self.lock, torch.no_grad():
            probs = torch.softmax(logits_of(self.model(x)).float(), dim=1)[0].cpu()
        top = probs.topk(min(TOP, probs.numel()))
        predictions = [
            Prediction(int(i), self.label(int(i)), float(p)) for p, i in zip(top.values, top.indices, strict=True)
        ]
        small, small_box = shrink(photo, box, self.settings.work_side)
        return Session(name, small, small_box, x, predictions)

    def label(self, cls: int) -> str:
        labels = self.labels
        return labels[cls] if labels and 0 <= cls < len(labels) else f"class {cls}"

    # ----- explaining and judging -------------------------------------------------------------------------

    def explain(
        self,
        session: Session,
        cls: int,
        names: Sequence[str],
        evidence: Evidence | None,
        step: Step | None = None,
    ) -> None:
        """Explain ``cls`` with every method in ``names`` not explained yet (for this evidence); a method that
        fails is recorded with its message and the others go on."""
        todo = [n for n in names if (n, cls, self.mode(n, evidence)) not in session.maps]
        for k, name in enumerate(todo):
            key = (name, cls, self.mode(name, evidence))
            if step is not None:
                step(k, len(todo), f"explaining with {registry.get(name).title}")
            try:
                with self.lock:
                    session.maps[key] = self.explainer(name, key[2]).explain(session.x, cls)
                session.failures.pop(key, None)
            except SaliscopeError as exc:
                session.failures[key] = one_line(str(exc))

    def explanation(self, session: Session, name: str, cls: int, evidence: Evidence | None) -> Explanation | None:
        return session.maps.get((name, cls, self.mode(name, evidence)))

    def failure(self, session: Session, name: str, cls: int, evidence: Evidence | None) -> str | None:
        return session.failures.get((name, cls, self.mode(name, evidence)))

    def report(self, session: Session, name: str, cls: int, evidence: Evidence | None) -> CheckReport | None:
        return session.reports.get((name, cls, self.view_key(name, evidence)))

    def view_key(self, name: str, evidence: Evidence | None) -> str:
        view = self.view(name, evidence)
        return f"{view.reduce}/{view.evidence}"

    def judge(
        self,
        session: Session,
        cls: int,
        names: Sequence[str],
        evidence: Evidence | None,
        step: Step | None = None,
    ) -> None:
        """Run the checks on the map each method shows (its view), once per method, class and view."""
        checks = tuple(self.settings.checks)
        if not checks:
            return
        todo = [
            n
            for n in names
            if self.explanation(session, n, cls, evidence) is not None
            and (n, cls, self.view_key(n, evidence)) not in session.reports
        ]
        for k, name in enumerate(todo):
            if step is not None:
                step(k, len(todo), f"checking {registry.get(name).title}")
            e = self.explanation(session, name, cls, evidence)
            assert e is not None
            with self.lock:
                report = self._judge_view(session, name, e, evidence, checks)
            session.reports[(name, cls, self.view_key(name, evidence))] = report

    def _judge_view(
        self, session: Session, name: str, e: Explanation, evidence: Evidence | None, checks: tuple[str, ...]
    ) -> CheckReport:
        view = self.view(name, evidence)
        explainer = self.explainer(name, self.mode(name, evidence))
        t, seed = self.settings.thresholds, self.settings.options.seed or 0
        on_view = tuple(c for c in checks if c != "completeness")
        # The map as shown is what is judged (the view is a parameter of measuring); the completeness gap
        # belongs to the raw attributions.
        found = measure(
            shown(e, view),
            self.model,
            session.x,
            explainer=ShownMaps(explainer, view),
            checks=on_view or ("map",),
            thresholds=t,
            seed=seed,
        )
        if "completeness" in checks:
            path = measure(e, self.model, session.x, checks=("completeness",), thresholds=t, seed=seed)
            found.completeness_gap = path.completeness_gap
            found.notes.update(path.notes)
        return judge(found, checks=checks, thresholds=t)

    def compare(
        self,
        session: Session,
        cls: int,
        names: Sequence[str],
        evidence: Evidence | None,
        step: Step | None = None,
    ) -> Comparison:
        """The measured comparison of ``names`` on this photo and class (every row judges the shown map)."""
        if not names:
            raise MethodError("no method ticked", "tick at least one method to compare")
        explainers = {n: self.explainer(n, self.mode(n, evidence)) for n in names}
        done = [0]

        def on_method(name: str) -> None:
            if step is not None:
                step(done[0], len(names), f"measuring {registry.get(name).title}")
            done[0] += 1

        with self.lock:
            return compare_methods(
                self.model,
                session.x,
                explainers,
                cls,
                thresholds=self.settings.thresholds,
                timing_runs=self.settings.timing_runs,
                evidence=evidence,
                seed=self.settings.options.seed or 0,
                on_method=on_method,
            )

    # ----- pictures and files -----------------------------------------------------------------------------

    def picture(
        self, session: Session, e: Explanation, view: DisplayHint, alpha: float, max_side: int | None = None
    ) -> Image.Image:
        """The map over the visitor's photo (the model's square dashed), at most ``max_side`` pixels."""
        photo, box = session.photo, session.box
        if max_side is not None:
            photo, box = shrink(photo, box, max_side)
        saliency = e.saliency(view.reduce, view.evidence)[0, 0]
        return dashed_box(overlay(photo, saliency, crop_box=box, signed=view.signed, alpha=alpha), box)

    def preview(self, session: Session) -> Image.Image:
        photo, box = shrink(session.photo, session.box, self.settings.display_side)
        return dashed_box(photo.copy(), box)

    def write_downloads(
        self,
        session: Session,
        cls: int,
        names: Sequence[str],
        evidence: Evidence | None,
        alpha: float,
    ) -> list[Path]:
        """PNG overlays, raw ``.npy`` attributions and a ``summary.json``, in a folder of this call's own."""
        self._prune()
        folder = self._root / uuid.uuid4().hex
        stem = f"{slug(session.name)}-{cls}"
        written: list[Path] = []
        records = []
        for name in names:
            e = self.explanation(session, name, cls, evidence)
            if e is None:
                continue
            view = self.view(name, evidence)
            suffix = "" if evidence is None else f"-{evidence}"
            written.append(save_png(self.picture(session, e, view, alpha), folder / f"{stem}-{name}{suffix}.png"))
            raw = e.attributions[0].detach().to("cpu", torch.float32).numpy()
            mode = self.mode(name, evidence)
            computed = "" if mode in (None, "positive") else f"-{mode}"  # a CAM computed for other evidence
            written.append(save_npy(np.ascontiguousarray(raw), folder / f"{stem}-{name}{computed}.npy"))
            report = self.report(session, name, cls, evidence)
            records.append(
                {
                    **{k: v for k, v in e.summary().items() if k in ("method", "params", "cost", "completeness_gap")},
                    "title": registry.get(name).title,
                    "shown": {"reduce": view.reduce, "evidence": view.evidence},
                    "checks": None if report is None else report.as_dict(),
                }
            )
        summary = {
            "photo": session.name,
            "size": list(session.photo.size),
            "crop_box": list(session.box),
            "model": self.model_name,
            "top5": [{"index": p.index, "label": p.label, "probability": p.probability} for p in session.top],
            "class": cls,
            "label": self.label(cls),
            "evidence": evidence or "default",
            "alpha": alpha,
            "methods": records,
        }
        written.append(save_json(summary, folder / f"{stem}-summary.json"))
        return written

    def _prune(self, older_than_s: float = 3600.0) -> None:
        """Remove download folders older than an hour (the page has long copied them)."""
        now = time.time()
        with contextlib.suppress(OSError):
            for folder in self._root.iterdir():
                with contextlib.suppress(OSError):
                    if now - folder.stat().st_mtime > older_than_s:
                        shutil.rmtree(folder, ignore_errors=True)

    def settings_record(self) -> dict[str, Any]:
        o = self.settings.options
        return {
            "model": self.model_name,
            "methods": list(self.settings.methods),
            "checks": list(self.settings.checks),
            "n_steps": o.n_steps,
            "n_samples": o.n_samples,
            "seed": o.seed,
        }


def dashed_box(image: Image.Image, box: Box, *, dash: int = 6) -> Image.Image:
    """Outline ``box`` with a white dashed line (over a dark one, visible on light photos too), in place,
    when it is only part of the image."""
    from PIL import ImageDraw

    left, top, right, bottom = (round(v) for v in box)
    if left <= 0 and top <= 0 and right >= image.width and bottom >= image.height:
        return image
    right, bottom = min(right, image.width) - 1, min(bottom, image.height) - 1
    left, top = max(left, 0), max(top, 0)
    draw = ImageDraw.Draw(image)
    draw.rectangle((left, top, right, bottom), outline=(40, 40, 40))
    for start in range(left, right, 2 * dash):
        end = min(start + dash, right)
        draw.line((start, top, end, top), fill=(255, 255, 255))
        draw.line((start, bottom, end, bottom), fill=(255, 255, 255))
    for start in range(top, bottom, 2 * dash):
        end = min(start + dash, bottom)
        draw.line((left, start, left, end), fill=(255, 255, 255))
        draw.line((right, start, right, end), fill=(255, 255, 255))
    return image


def slug(text: str) -> str:
    kept = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(part for part in kept.split("-") if part) or "photo"


def one_line(text: str) -> str:
    return " ".join(text.split())
