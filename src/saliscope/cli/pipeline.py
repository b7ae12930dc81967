"""What ``saliscope explain`` and ``saliscope demo`` do for each image, apart from parsing.

For one image: read it, predict (top-5), explain the chosen class(es) with every method, render the
overlays and the panel in memory, and only then write the files. A failure anywhere before the writes
leaves nothing on disk for that image; each write is atomic, so a file is either complete or absent,
and a write that fails part-way removes the image's files already written (and any folder it made).

``OUT/summary.json`` layout::

    {"saliscope_version", "model": {"name", "spec", "num_classes", "input_size"}, "device",
     "methods": [...], "options": {seed, n_samples, n_steps, tolerance, max_evals, sigma, baseline, chunk_size},
     "target", "alpha", "top_k", "evidence",
     "images": [{"path", "output_dir", "size": [w, h], "crop_box": [l, t, r, b],
                 "top5": [{"index", "label", "probability"}],
                 "explained": [{"rank", "class", "label", "probability", "panel",
                                "methods": [{"name", "title", "params", "cost", "batch_size", "score",
                                             "completeness_gap"?, ..., "display": {"reduce", "evidence"},
                                             "files": {"png", "npy"}}]}],
                 "warnings": [...]}],
     "failures": [{"path", "error"}]}

For a detector or a segmentation model (``cli/regions.py``) ``"target"`` is the target options given
(``{"kind": "detector", "detection": 0}``), and each image has ``"input_size"``, ``"detections": [{"rank",
"label", "class", "score", "box"}]`` (or ``"classes": [{"class", "label", "area"}]``) and ``"explained":
[{"target": {"kind", "box" | "region", "class", "label", ...}, "panel", "methods"}]``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn

from .. import registry
from ..audit.engines.options import Engine, RayOptions
from ..core.errors import ImageError, MethodError, SaliscopeError, TargetError
from ..core.targets import ClassTarget, label_index, logits_of
from ..core.views import DEFAULT_ALPHA, Evidence
from ..io.folder_lock import FolderLock
from ..methods.base import Explainer
from ..viz import display_hint, overlay, panel, save_json, save_npy, save_png
from . import checking

if TYPE_CHECKING:
    from ..models.preprocess import Preprocess
    from .regions import Dense

TOP = 5


@dataclass(frozen=True)
class Source:
    """One image to explain: how to name it and how to read it."""

    path: str  # as given, for messages and the summary
    stem: str  # output folder name
    read: Callable[[], Image.Image]


@dataclass(frozen=True)
class Settings:
    methods: tuple[str, ...]
    out: Path
    target: str = "predicted"
    top_k: int | None = None
    evidence: Evidence | None = None
    alpha: float = DEFAULT_ALPHA
    options: registry.MethodOptions = field(default_factory=registry.MethodOptions)
    device: str = "cpu"
    model_spec: str | None = None
    all_methods: bool = False  # --method all: skip methods that do not apply to the model
    check: bool = False  # judge every map (trust.check_view), print the verdicts and write OUT/index.html
    page_title: str = "saliscope: maps and their verdicts"
    region: Any = None  # explain: a cli.regions.Planner (detectors and segmentation models), or None
    engine: Engine = "local"  # where the images are explained: this process, or a Ray cluster
    ray: RayOptions = field(default_factory=RayOptions)  # the Ray cluster and its workers (engine "ray")


@dataclass
class Rendered:
    """Everything one image produces, held in memory until all of it succeeded."""

    files: list[tuple[str, Any, Callable[[Any, Path], Path]]]
    record: dict[str, Any]
    sections: list[checking.ImageSection] = field(default_factory=list)  # the page's, per class, when checked


# ----- inputs -----------------------------------------------------------------------------------------


def method_names(values: Sequence[str]) -> tuple[str, ...]:
    """``("gradient,smoothgrad", "all")`` → registry names, in order, without repeats."""
    names: list[str] = []
    for value in values:
        parts = [part.strip() for part in value.split(",")]
        if len(parts) > 1 and not all(parts):
            raise SaliscopeError(
                f"--method {value!r} has an empty name (a stray comma)",
                "separate method names with single commas, e.g. --method gradient,smoothgrad",
            )
        for part in parts:
            if not part:
                continue
            wanted = registry.available() if part.lower() == "all" else [registry.get(part).name]
            names.extend(n for n in wanted if n not in names)
    if not names:
        raise SaliscopeError("no method given", f"use --method with one of: {', '.join(registry.available())}")
    return tuple(names)


def file_sources(paths: Sequence[str]) -> list[Source]:
    """Expand folders into their images.

    A folder that holds no images, or cannot be listed, becomes a source whose reading fails: like
    a bad image it is the run's one error when alone, and is listed among the failures otherwise.
    """
    from ..io import list_images

    sources: list[Source] = []
    for given in paths:
        try:
            found = list_images([given])
            if not found and _is_dir(Path(given)):
                raise ImageError(
                    f"no images found in the folder {given}",
                    "pass image files (.jpg, .png, ...) or a folder that contains some",
                )
        except ImageError as exc:
            sources.append(Source(given, _stem(Path(given).name), _failing(exc)))
            continue
        for path in found:
            sources.append(Source(str(path), _stem(path.stem), _reader(path)))
    if not sources:
        raise ImageError("no image given", "pass image files (.jpg, .png, ...) or folders that contain some")
    return unique_stems(sources)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _stem(stem: str) -> str:
    """An output folder name: "..png" has the stem ".", which would be OUT itself."""
    return "image" if stem.strip(".") == "" else stem


def _failing(error: ImageError) -> Callable[[], Image.Image]:
    def read() -> Image.Image:
        raise error

    return read


def _reader(path: Path) -> Callable[[], Image.Image]:
    def read() -> Image.Image:
        from ..io import load_image

        return load_image(path)

    return read


def preread(source: Source) -> Source:
    """The source with its image read now (errors surface here) and kept."""
    image = source.read()
    return Source(source.path, source.stem, lambda: image)


def unique_stems(sources: list[Source]) -> list[Source]:
    """Two images named alike (a/cat.jpg, b/cat.png) get folders cat and cat-2."""
    seen: dict[str, int] = {}
    out = []
    for s in sources:
        key = s.stem.lower()
        seen[key] = seen.get(key, 0) + 1
        out.append(s if seen[key] == 1 else Source(s.path, f"{s.stem}-{seen[key]}", s.read))
    return out


def check_out(out: Path) -> Path:
    """The output folder, checked before any work: it (or the folder it will be made in) must be writable.

    Nothing is created here: a run whose every image fails leaves no output folder behind.
    """
    try:
        return _check_out(out)
    except PermissionError as exc:  # a folder on the way that cannot be searched
        raise SaliscopeError(
            f"no permission to reach the output folder {out} (a folder on its path cannot be searched)",
            "pass a folder you can write to with --out",
        ) from exc
    except OSError as exc:
        raise SaliscopeError(
            f"cannot use the output folder {out} ({exc.strerror or exc})", "pass another --out folder"
        ) from exc


def _check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise SaliscopeError(f"the output path {out} exists and is not a folder", "pass another --out folder")
    existing = out
    while not existing.exists():
        if existing.is_symlink():
            raise SaliscopeError(f"the output path {existing} is a broken symbolic link", "pass another --out folder")
        parent = existing.parent
        if parent == existing:
            break
        existing = parent
    if not existing.is_dir():
        raise SaliscopeError(
            f"the output folder {out} cannot be created: {existing} is a file, not a folder",
            "pass another --out folder",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == out else f" (it would be created in {existing})"
        raise SaliscopeError(
            f"no permission to write to the output folder {out}{where}",
            "pass a folder you can write to with --out",
        )
    return out


def num_classes(model: nn.Module, device: str) -> int:
    labels = getattr(model, "labels", None)
    if labels:
        return len(labels)
    size = int(getattr(getattr(model, "preprocess", None), "size", 224))
    with torch.no_grad():
        return int(logits_of(model(torch.zeros(1, 3, size, size, device=device))).shape[1])


def resolve_target(text: str, labels: Sequence[str] | None, classes: int) -> int | None:
    """``predicted`` → None; an index or a label name → a checked class index."""
    t = text.strip()
    if not t:
        raise TargetError("--target is empty", f"pass 'predicted', a class index 0..{classes - 1} or a label name")
    if t.lower() in ("predicted", "top1", "top-1"):
        return None
    if t.lstrip("+-").isdigit():
        index = int(t)
        if not 0 <= index < classes:
            raise TargetError(
                f"class index {index} is out of range: the model has {classes} classes (0..{classes - 1})",
                "pick an index in that range, or a label name",
            )
        return index
    if _is_number(t) and not (labels and t in labels):
        raise TargetError(
            f"--target {text!r} is not a whole class index",
            f"pass an integer from 0 to {classes - 1}, e.g. --target 281, or a label name",
        )
    if not labels:
        raise TargetError(f"--target {text!r} is a label name but the model has no labels", "pass a class index")
    return label_index(t, labels)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def label_of(labels: Sequence[str] | None, index: int) -> str:
    return labels[index] if labels and 0 <= index < len(labels) else f"class {index}"


# ----- one image --------------------------------------------------------------------------------------


def explain_image(
    source: Source,
    model: nn.Module,
    explainers: dict[str, Explainer],
    settings: Settings,
    target_index: int | None,
    say: Callable[[str], None],
    checker: checking.Checker | None = None,
) -> Rendered:
    """Predict, explain and render one image, in memory. Raises on the first failure. With a ``checker``
    (:class:`~saliscope.cli.checking.Checker`) every map is judged and one verdict line per method printed."""
    image = source.read()
    preprocess: Preprocess = model.preprocess  # type: ignore[assignment]  # load_model and the CLI set it
    labels = getattr(model, "labels", None)
    x0, y0, x1, y1 = (float(v) for v in preprocess.crop_box(*image.size))
    box = (x0, y0, x1, y1)
    x = preprocess(image).to(settings.device)
    with torch.no_grad():
        probs = torch.softmax(logits_of(model(x)).float(), dim=1)[0].cpu()
    top = probs.topk(min(TOP, probs.numel()))
    top5: list[dict[str, Any]] = [
        {"index": int(i), "label": label_of(labels, int(i)), "probability": float(p)}
        for p, i in zip(top.values, top.indices, strict=True)
    ]
    say(f"{source.path}  ({image.width}x{image.height})")
    for rank, entry in enumerate(top5, start=1):
        say(f"  {rank}. {entry['label'][:48]:<48} {entry['probability']:7.2%}")

    if settings.top_k is not None:
        if settings.top_k > probs.numel():
            raise TargetError(
                f"--top-k {settings.top_k} is more than the model's {probs.numel()} classes",
                "use a smaller --top-k",
            )
        classes = [int(i) for i in probs.topk(settings.top_k).indices]
        ranks: list[int | None] = list(range(1, settings.top_k + 1))
    else:
        classes = [int(probs.argmax()) if target_index is None else target_index]
        ranks = [None]
    for c, r in zip(classes, ranks, strict=True):
        which = f"top-{r} class" if r is not None else ("predicted class" if target_index is None else "class")
        say(f"  explaining {which} {c} '{label_of(labels, c)}' ({float(probs[c]):.2%})")

    # All target classes in one batch: every method explains them in one call (batches are first-class).
    batch = x.expand(len(classes), -1, -1, -1).contiguous()
    target = ClassTarget(classes[0] if len(classes) == 1 else tuple(classes))
    explanations = {}
    timing = []
    for name, explainer in explainers.items():
        e = explainer.explain(batch, target)
        explanations[name] = e
        timing.append(f"{name} {e.cost.seconds:.2f}s")
    say("  " + ", ".join(timing))

    reports = {}
    if checker is not None:
        say("  verdicts:")
        width = max(len(registry.get(name).title) for name in explanations)
        for name, e in explanations.items():
            hint = display_hint(name, settings.evidence)
            reports[name] = checker.report(name, explainers[name], e, batch, hint, len(classes))
            for report in reports[name]:
                say(checking.verdict_line(registry.get(name).title, report, width))

    files: list[tuple[str, Any, Callable[[Any, Path], Path]]] = []
    explained = []
    sections = []
    for i, (c, r) in enumerate(zip(classes, ranks, strict=True)):
        suffix = "" if r is None else f"-top{r}"
        columns = []
        methods = []
        cards = []
        for name, e in explanations.items():
            hint = display_hint(name, settings.evidence)
            saliency = e.saliency(hint.reduce, hint.evidence)[i, 0]
            png, npy = f"{source.stem}/{name}{suffix}.png", f"{source.stem}/{name}{suffix}.npy"
            picture = overlay(image, saliency, crop_box=box, signed=hint.signed, alpha=settings.alpha)
            files.append((png, picture, save_png))
            files.append((npy, e.attributions[i].detach().to("cpu", torch.float32).numpy(), save_npy))
            title = registry.get(name).title
            columns.append((title, saliency, hint.signed))
            methods.append(_method_record(e[i], title, len(classes), hint.reduce, hint.evidence, png, npy))
            if name in reports:
                methods[-1]["checks"] = reports[name][i].as_dict()
                cards.append(checking.card(title, picture, reports[name][i], e[i], hint.signed))
        heading = f"{Path(source.path).name}: {label_of(labels, c)} ({float(probs[c]):.1%})"
        if r is not None:
            heading = f"{heading}, top-{r}"
        figure = panel(image, columns, crop_box=box, title=heading, alpha=settings.alpha)
        panel_name = f"{source.stem}/panel{suffix}.png"
        files.append((panel_name, figure, save_png))
        if cards:
            ranked = [(label_of(labels, int(k)), float(q)) for q, k in zip(top.values, top.indices, strict=True)]
            explained_text = f"class {c} '{label_of(labels, c)}' ({float(probs[c]):.1%})"
            if r is not None:
                explained_text += f", top-{r}"
            section = source.stem if r is None else f"{source.stem} (top-{r})"
            sections.append(checking.ImageSection(section, image, ranked, explained_text, cards, source.path))
        explained.append(
            {
                "rank": r,
                "class": c,
                "label": label_of(labels, c),
                "probability": float(probs[c]),
                "panel": panel_name,
                "methods": methods,
            }
        )
    record = {
        "path": source.path,
        "output_dir": source.stem,
        "size": [image.width, image.height],
        "crop_box": list(box),
        "top5": top5,
        "explained": explained,
    }
    return Rendered(files, record, sections)


def _method_record(e: Any, title: str, batch: int, reduce: str, evidence: str, png: str, npy: str) -> dict[str, Any]:
    summary = e.summary()
    record: dict[str, Any] = {"name": summary.pop("method"), "title": title}
    record["params"] = summary.pop("params")
    record["cost"] = summary.pop("cost")
    record["batch_size"] = batch  # the cost covers the whole batch of target classes
    summary.pop("classes", None)
    for key in ("nodes", "weights"):  # the adaptive rule's node lists: one value per image would mislead
        summary.pop(key, None)
    # Per-sample lists of one value (this sample) become plain numbers.
    for key, value in summary.items():
        record["score" if key == "scores" else key] = value[0] if isinstance(value, list) and len(value) == 1 else value
    record["display"] = {"reduce": reduce, "evidence": evidence}
    record["files"] = {"png": png, "npy": npy}
    return record


def write(rendered: Rendered, out: Path) -> None:
    """Write one image's files: all of them, or (on a failure) none of them and no new empty folder."""
    paths = [out / relative for relative, _obj, _saver in rendered.files]
    folders = {p.parent for p in paths} | {out, *out.parents}
    new_folders = sorted((f for f in folders if not f.exists()), key=lambda f: len(f.parts), reverse=True)
    written: list[Path] = []
    path = out
    try:
        for path, (_relative, obj, saver) in zip(paths, rendered.files, strict=True):
            saver(obj, path)
            written.append(path)
    except BaseException as exc:
        for done in written:
            with contextlib.suppress(OSError):
                done.unlink()
        for folder in new_folders:  # deepest first; only the ones this call created, once empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise SaliscopeError(
                f"cannot write {path}: {exc.strerror or exc}", "check --out and free disk space"
            ) from exc
        raise


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    try:
        return save_json(summary, path)
    except OSError as exc:
        raise SaliscopeError(f"cannot write {path}: {exc.strerror or exc}", "check --out and free disk space") from exc


def captured(caught: list[warnings.WarningMessage]) -> list[str]:
    """Messages of the warnings a run raised, once each, in order."""
    seen: list[str] = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.append(text)
    return seen


# ----- a whole run ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    done: int
    failures: list[tuple[str, str]]
    summary_path: Path | None


def applicable(
    model: nn.Module, settings: Settings, err_line: Callable[[str], None], kind: str = "classifier"
) -> list[str]:
    """The requested methods that apply to ``model``; attention methods need a transformer whose attention is
    one global matrix over the image tokens, D-RISE a detector."""
    from ..methods.attention import refusal

    names = []
    for name in settings.methods:
        if registry.get(name).needs_detector and kind != "detector":
            if settings.all_methods:
                err_line(f"note: skipping {name}: it explains a detector's detections, and this model is a {kind}")
                continue
            raise MethodError(
                f"{name} explains the detections of an object detector, and this model is a {kind}",
                "use --method rise for the same random masks on a classifier or a segmentation model",
            )
        reason = refusal(model) if registry.get(name).needs_attention else None
        if reason is not None:
            if settings.all_methods:
                err_line(f"note: skipping {name}: {reason}")
                continue
            raise MethodError(
                f"{name} does not apply to this model: {reason}",
                "use a CAM such as --method gradcam, or a Vision Transformer such as --model timm:vit_base_patch16_224",
            )
        names.append(name)
    return names


def check_layer(model: nn.Module, explainers: dict[str, Explainer], device: str) -> None:
    """A wrong ``--layer`` is a user error of the whole run: found before any image, not once per image."""
    from ..methods.cam import CAM

    cams = [e for e in explainers.values() if isinstance(e, CAM) and e.layer is not None]
    if not cams:
        return
    size = int(getattr(getattr(model, "preprocess", None), "size", 224))
    cams[0].layer_grid(model, torch.zeros(1, 3, size, size, device=device))


def run(
    sources: list[Source],
    model: nn.Module,
    settings: Settings,
    *,
    out_line: Callable[[str], None],
    err_line: Callable[[str], None],
    debug: bool = False,
    progress: Callable[[list[Source]], Any] | None = None,
) -> Outcome:
    """Explain every source; a failing image is recorded and the run goes on.

    With a single image its error is raised instead (the caller prints it as the run's one error).
    ``settings.engine`` says where the images are explained: here, or on a Ray cluster
    (:mod:`saliscope.cli.explain_ray`), with the same files written. The output folder is locked for the
    run: a second run writing to it refuses (:class:`~saliscope.io.folder_lock.FolderInUseError`).
    """
    with FolderLock(settings.out):
        return _run(sources, model, settings, out_line=out_line, err_line=err_line, debug=debug, progress=progress)


def _run(
    sources: list[Source],
    model: nn.Module,
    settings: Settings,
    *,
    out_line: Callable[[str], None],
    err_line: Callable[[str], None],
    debug: bool,
    progress: Callable[[list[Source]], Any] | None,
) -> Outcome:
    from .. import __version__

    labels = getattr(model, "labels", None)
    dense = settings.region.plan(model, settings) if settings.region is not None else None
    classes, target_index = len(labels or ()), None
    if dense is None:
        classes = num_classes(model, settings.device)
        target_index = resolve_target(settings.target, labels, classes)
        if settings.top_k is not None and not 1 <= settings.top_k <= classes:
            raise TargetError(f"--top-k must be between 1 and {classes}, got {settings.top_k}", "use e.g. --top-k 3")
    kind = dense.kind if dense is not None else "classifier"
    if settings.check and dense is not None:
        raise MethodError(
            f"--check judges the maps of a classifier's class scores, and this model is a {kind}",
            "leave out --check; `saliscope evaluate` and the metrics take a BoxTarget or SegmentationTarget in Python",
        )
    explainers = {
        name: registry.create(name, model, settings.options) for name in applicable(model, settings, err_line, kind)
    }
    check_layer(model, explainers, settings.device)

    sections: list[checking.ImageSection] = []
    if settings.engine == "ray":
        from .explain_ray import explain_on_ray

        if dense is not None or settings.check:
            what = "--check" if dense is None else f"a {kind}"
            raise MethodError(
                f"the Ray engine explains a classifier's class maps without --check; this run asks for {what}",
                "run it with --engine local",
            )
        images, failures = explain_on_ray(
            sources,
            model,
            list(explainers),
            settings,
            target_index,
            out_line=out_line,
            err_line=err_line,
            debug=debug,
            progress=progress,
        )
    else:
        images, failures = _explain_here(
            sources,
            model,
            explainers,
            settings,
            target_index,
            dense,
            sections,
            out_line=out_line,
            err_line=err_line,
            debug=debug,
            progress=progress,
        )

    summary_path = None
    if images:
        o = settings.options
        summary = {
            "saliscope_version": __version__,
            "model": {
                "name": getattr(model, "name", type(model).__name__),
                "spec": settings.model_spec,
                "num_classes": classes,
                "input_size": int(getattr(model.preprocess, "size", 0)),
            },
            "device": settings.device,
            "methods": list(settings.methods),
            "options": {
                "seed": o.seed,
                "n_samples": o.n_samples,
                "n_steps": o.n_steps,
                "tolerance": o.tolerance,
                "max_evals": o.max_evals,
                "sigma": o.sigma,
                "baseline": o.baseline,
                "chunk_size": o.chunk_size,
            },
            "target": settings.target if dense is None else dense.summary(),
            "alpha": settings.alpha,
            "top_k": settings.top_k,
            "evidence": settings.evidence,
            "checked": settings.check,
            "images": images,
            "failures": [{"path": p, "error": e} for p, e in failures],
        }
        summary_path = write_summary(settings.out, summary)
        if sections:
            label = checking.model_label(model)
            checking.write_page(settings.out, sections, title=settings.page_title, model=label)
    return Outcome(len(images), failures, summary_path)


def _explain_here(
    sources: list[Source],
    model: nn.Module,
    explainers: dict[str, Explainer],
    settings: Settings,
    target_index: int | None,
    dense: Dense | None,
    sections: list[checking.ImageSection],
    *,
    out_line: Callable[[str], None],
    err_line: Callable[[str], None],
    debug: bool,
    progress: Callable[[list[Source]], Any] | None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The local engine: each source explained and written in turn; returns the records and the failures, and
    adds each checked image's page sections to ``sections``."""
    images: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    checker = checking.Checker(model, len(sources), settings.options.seed or 0) if settings.check else None
    iterator = progress(sources) if progress is not None else sources
    for source in iterator:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                if dense is not None:
                    rendered = dense.explain_image(source, model, explainers, settings, out_line)
                else:
                    rendered = explain_image(source, model, explainers, settings, target_index, out_line, checker)
            notes = captured([w for w in caught if issubclass(w.category, UserWarning)])
            for note in notes:
                err_line(f"warning: {source.path}: {note}")
            rendered.record["warnings"] = notes
            write(rendered, settings.out)
        except SaliscopeError as exc:
            if len(sources) == 1:
                raise
            failures.append((source.path, one_line(str(exc))))
            err_line(f"error: {source.path}: {one_line(str(exc))}")
            continue
        except Exception as exc:
            if len(sources) == 1 or debug:
                raise
            reason = f"internal error: {type(exc).__name__}: {one_line(str(exc))}"
            failures.append((source.path, reason))
            err_line(f"error: {source.path}: {reason}")
            continue
        images.append(rendered.record)
        sections.extend(rendered.sections)
        out_line(f"  -> {settings.out / source.stem}{os.sep}")
    return images, failures


def one_line(text: str) -> str:
    return " ".join(text.split())
