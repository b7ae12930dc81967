"""The explorer's page (Gradio): photo in, top-5 classes, one map per method with its verdicts, switches for
the class, the evidence and the opacity, the measured comparison, and the files to download.

Every handler takes what the page sends (bytes of an upload, a sample's name, the ticked methods, the class)
and the visitor's :class:`~saliscope.app.engine.Session` (kept per browser tab by ``gr.State``); none of them
opens a path the browser names. Model work shares one queue (``concurrency_id="model"``, one at a time),
so a second visitor waits for the first instead of interleaving with it. Errors a visitor can cause end as a
message in the page; anything else is logged and shown as an internal error, and the server goes on serving.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import gradio as gr
from PIL import Image

from .. import registry
from ..core.errors import SaliscopeError
from ..core.views import DEFAULT_ALPHA, Evidence
from ..io.samples import SAMPLE_NAMES
from ..viz.files import png_bytes
from ..viz.panel import shrink
from .engine import Explorer, Session, dashed_box, evidence_of, one_line
from .render import Card, cards_html, status_html
from .uploads import read_upload, sample_photo

log = logging.getLogger("saliscope.app")

EVIDENCE_CHOICES = [
    ("as each method shows it", "default"),
    ("positive", "positive"),
    ("negative", "negative"),
    ("signed", "signed"),
]
_MODEL = "model"  # the one queue every handler that runs the model joins


def _intro(explorer: Explorer) -> str:
    classes = len(explorer.labels) if explorer.labels else "?"
    return (
        "## saliscope explorer\n"
        "Which pixels raise — or lower — the model's score for a class? Upload a photo or pick a sample, tick "
        f"the methods and press **Explain**. Model: `{explorer.model_name}` ({classes} classes)."
    )


def build_app(explorer: Explorer) -> gr.Blocks:
    """The page, wired to ``explorer``; call ``.launch()`` on it (see :func:`saliscope.app.launch`)."""
    settings = explorer.settings
    with gr.Blocks(title="saliscope explorer", analytics_enabled=False, delete_cache=(1800, 3600)) as page:
        session = gr.State(None, time_to_live=2 * 3600)  # a visitor's maps, dropped after 2 h
        gr.Markdown(_intro(explorer), elem_id="intro")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                upload = gr.File(
                    label="Your photo (JPEG, PNG, WebP, GIF, BMP, TIFF)",
                    file_types=["image"],
                    type="binary",
                    elem_id="upload",
                )
                sample = gr.Dropdown(
                    choices=list(SAMPLE_NAMES), value=None, label="…or a sample photo", elem_id="sample"
                )
                preview = gr.Image(
                    label="The photo (dashed: the square the model sees)",
                    type="pil",
                    interactive=False,
                    buttons=[],
                    height=260,
                    elem_id="preview",
                )
                methods = gr.CheckboxGroup(
                    choices=explorer.titled_methods(),
                    value=list(settings.methods),
                    label="Methods",
                    elem_id="methods",
                )
                explain = gr.Button("Explain", variant="primary", elem_id="explain")
                status = gr.HTML(elem_id="status", min_height=70)
            with gr.Column(scale=2, min_width=480):
                top5 = gr.Label(label="Top-5 predictions", num_top_classes=5, elem_id="top5")
                with gr.Row():
                    klass = gr.Radio(label="Explain the class", choices=[], elem_id="class", scale=3)
                    evidence = gr.Radio(
                        label="Evidence", choices=EVIDENCE_CHOICES, value="default", elem_id="evidence", scale=2
                    )
                alpha = gr.Slider(
                    0.0, 1.0, value=DEFAULT_ALPHA, step=0.05, label="Opacity of the maps", elem_id="alpha"
                )
                maps = gr.HTML(elem_id="maps", min_height=60)
                with gr.Accordion("Measured comparison of the ticked methods", open=False, elem_id="comparison"):
                    gr.Markdown(
                        "Time, finest detail, stability, faithfulness and sanity, measured on this photo and "
                        "class, graded good / moderate / poor. It re-runs every method several times: expect "
                        "a while."
                    )
                    compare = gr.Button("Run the measured comparison", elem_id="compare")
                    chart = gr.Image(
                        label="Comparison chart",
                        type="pil",
                        format="png",
                        interactive=False,
                        buttons=["download"],
                        elem_id="chart",
                    )
                downloads = gr.File(
                    label="Downloads: maps (PNG), raw attributions (.npy), summary.json",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )

        handlers = Handlers(explorer)
        cleared = [top5, klass, maps, downloads, chart, session]
        upload.upload(handlers.on_upload, [upload], [sample, preview, status, *cleared], api_visibility="undocumented")
        upload.clear(handlers.on_clear, None, [preview, status, *cleared], api_visibility="undocumented")
        sample.input(handlers.on_sample, [sample], [upload, preview, status, *cleared], api_visibility="undocumented")
        shown = [status, maps, downloads, session]
        explained = explain.click(
            handlers.on_explain,
            [upload, sample, methods, evidence, alpha],
            [status, top5, klass, maps, downloads, chart, session],
            concurrency_id=_MODEL,
            concurrency_limit=1,
            show_progress_on=[status],
            api_name="explain",
        )
        # A new class or evidence stops this visitor's earlier work at its next step (what is finished stays
        # in the session), so the page follows the latest choice instead of queueing behind stale checks.
        switched: list[Any] = []
        for control in (klass, evidence):
            switched.append(
                control.input(
                    handlers.on_switch,
                    [klass, methods, evidence, alpha, session],
                    shown,
                    concurrency_id=_MODEL,
                    concurrency_limit=1,
                    show_progress_on=[status],
                    api_visibility="undocumented",
                    cancels=[explained, *switched],
                )
            )
        alpha.release(
            handlers.on_alpha, [klass, methods, evidence, alpha, session], shown, api_visibility="undocumented"
        )
        compare.click(
            handlers.on_compare,
            [klass, methods, evidence, session],
            [chart, status],
            concurrency_id=_MODEL,
            concurrency_limit=1,
            show_progress_on=[status],
            api_visibility="undocumented",
        )
    return page


class Handlers:
    """The page's event handlers: plain functions of what the page sends and the visitor's session."""

    def __init__(self, explorer: Explorer) -> None:
        self.x = explorer

    # ----- the photo -----------------------------------------------------------------------------------

    def _opened(self, upload: bytes | None, sample: str | None) -> tuple[Any, str]:
        """A preview of the photo and a note, or no preview and the reason it cannot be used."""
        try:
            limit = self.x.settings.max_upload_bytes
            photo = read_upload(upload, max_bytes=limit) if upload else sample_photo(sample or "")
        except SaliscopeError as exc:
            return None, status_html(_message(exc), "error")
        preprocess: Any = self.x.model.preprocess
        x0, y0, x1, y1 = (float(v) for v in preprocess.crop_box(*photo.size))
        small, small_box = shrink(photo, (x0, y0, x1, y1), self.x.settings.display_side)
        note = f"{photo.width}×{photo.height} pixels: press Explain."
        return dashed_box(small.copy(), small_box), status_html(note)

    def _cleared(self) -> list[Any]:
        return [None, gr.Radio(choices=[], value=None), "", None, None, None]

    def on_upload(self, upload: bytes | None) -> list[Any]:
        try:
            preview, note = self._opened(upload, None)
        except Exception as exc:
            log.error("reading an upload failed:\n%s", traceback.format_exc())
            preview, note = None, status_html(f"internal error while reading the upload: {type(exc).__name__}", "error")
        return [None, preview, note, *self._cleared()]

    def on_clear(self) -> list[Any]:
        return [None, "", *self._cleared()]

    def on_sample(self, sample: str | None) -> list[Any]:
        if not sample:
            return [gr.skip(), None, "", *self._cleared()]
        preview, note = self._opened(None, sample)
        return [None, preview, note, *self._cleared()]

    # ----- explaining -----------------------------------------------------------------------------------

    def on_explain(
        self,
        upload: bytes | None,
        sample: str | None,
        methods: Sequence[str] | None,
        evidence_choice: str | None,
        alpha: float,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's way to ask for progress
    ) -> Iterator[list[Any]]:
        skip = gr.skip()
        try:
            names = self._names(methods)
            evidence = evidence_of(evidence_choice)
            progress(0.0, desc="reading the photo and predicting")
            session = self.x.open(upload, sample)
        except SaliscopeError as exc:
            yield [status_html(_message(exc), "error"), skip, skip, skip, skip, skip, skip]
            return
        except Exception as exc:
            yield [_internal("reading the photo", exc), skip, skip, skip, skip, skip, skip]
            return
        top = session.top[0]
        label = {f"{p.label} ({p.index})": p.probability for p in session.top}
        klass = gr.Radio(choices=self._class_choices(session), value=top.index)
        yield [
            status_html(f"Explaining {top.label} ({top.index}) with {len(names)} method(s)…", "busy"),
            label,
            klass,
            self._cards(session, top.index, names, evidence, alpha, pending=False, waiting=set(names)),
            None,
            None,
            session,
        ]
        for values in self._work(session, top.index, names, evidence, alpha, progress):
            yield [values[0], skip, skip, values[1], values[2], skip, values[3]]

    def on_switch(
        self,
        cls: int | None,
        methods: Sequence[str] | None,
        evidence_choice: str | None,
        alpha: float,
        session: Session | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
    ) -> Iterator[list[Any]]:
        skip = gr.skip()
        if session is None or cls is None:
            yield [status_html("Press Explain first.", "note"), skip, skip, skip]
            return
        try:
            names = self._names(methods)
            evidence = evidence_of(evidence_choice)
            cls = self._class(session, cls)
        except SaliscopeError as exc:
            yield [status_html(_message(exc), "error"), skip, skip, skip]
            return
        yield from self._work(session, cls, names, evidence, alpha, progress)

    def on_alpha(
        self,
        cls: int | None,
        methods: Sequence[str] | None,
        evidence_choice: str | None,
        alpha: float,
        session: Session | None,
    ) -> list[Any]:
        skip = gr.skip()
        if session is None or cls is None:
            return [skip, skip, skip, skip]
        try:
            names = self._names(methods)
            evidence = evidence_of(evidence_choice)
            cls = self._class(session, cls)
            files = [str(p) for p in self.x.write_downloads(session, cls, names, evidence, alpha)]
            return [skip, self._cards(session, cls, names, evidence, alpha, pending=False), files, session]
        except SaliscopeError as exc:
            return [status_html(_message(exc), "error"), skip, skip, skip]
        except Exception as exc:
            return [_internal("redrawing the maps", exc), skip, skip, skip]

    def _work(
        self,
        session: Session,
        cls: int,
        names: list[str],
        evidence: Evidence | None,
        alpha: float,
        progress: gr.Progress,
    ) -> Iterator[list[Any]]:
        """Explain method by method (each map shows as soon as it is made), then judge each; yields
        [status, maps, downloads, session]."""
        what = f"{self.x.label(cls)} ({cls})"
        skip = gr.skip()
        checking = bool(self.x.settings.checks)
        try:
            for k, name in enumerate(names):
                if self.x.explanation(session, name, cls, evidence) is None:
                    progress((k, len(names)), desc=f"explaining with {registry.get(name).title}", unit="methods")
                    self.x.explain(session, cls, [name], evidence)
                    waiting = set(names[k + 1 :])
                    yield [
                        status_html(f"Explaining {what}: {k + 1} of {len(names)} method(s) done…", "busy"),
                        self._cards(session, cls, names, evidence, alpha, pending=checking, waiting=waiting),
                        skip,
                        session,
                    ]
            files = [str(p) for p in self.x.write_downloads(session, cls, names, evidence, alpha)]
            yield [
                status_html(f"Checking the maps of {what}…" if checking else f"Maps of {what}.", "busy"),
                self._cards(session, cls, names, evidence, alpha, pending=checking),
                files,
                session,
            ]
            if not checking:
                return
            for k, name in enumerate(names):
                if self.x.report(session, name, cls, evidence) is None:
                    progress((k, len(names)), desc=f"checking {registry.get(name).title}", unit="methods")
                    self.x.judge(session, cls, [name], evidence)
                    yield [skip, self._cards(session, cls, names, evidence, alpha, pending=True), skip, session]
            files = [str(p) for p in self.x.write_downloads(session, cls, names, evidence, alpha)]
            yield [
                status_html(self._summary(session, cls, names, evidence), "note"),
                self._cards(session, cls, names, evidence, alpha, pending=False),
                files,
                session,
            ]
        except SaliscopeError as exc:
            yield [status_html(_message(exc), "error"), skip, skip, session]
        except Exception as exc:
            yield [_internal("explaining", exc), skip, skip, session]

    def on_compare(
        self,
        cls: int | None,
        methods: Sequence[str] | None,
        evidence_choice: str | None,
        session: Session | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
    ) -> list[Any]:
        skip = gr.skip()
        if session is None or cls is None:
            return [skip, status_html("Press Explain first: the comparison measures the photo explained.", "note")]
        try:
            names = self._names(methods)
            evidence = evidence_of(evidence_choice)
            cls = self._class(session, cls)

            def step(done: int, total: int, doing: str) -> None:
                progress((done, total), desc=doing, unit="methods")

            result = self.x.compare(session, cls, names, evidence, step)
            title = f"{self.x.label(cls)} ({cls}): measured on this photo"
            chart = Image.open(io.BytesIO(png_bytes(result.figure(title=title))))
            flags = len(result.flags())
            note = f"Comparison of {len(names)} method(s) on {self.x.label(cls)}: " + (
                f"{flags} flag(s), listed under the chart." if flags else "no flags."
            )
            return [chart, status_html(note)]
        except SaliscopeError as exc:
            return [skip, status_html(_message(exc), "error")]
        except Exception as exc:
            return [skip, _internal("comparing", exc)]

    # ----- pieces ------------------------------------------------------------------------------------------

    def _names(self, methods: Sequence[str] | None) -> list[str]:
        names = [registry.get(m).name for m in (methods or [])]
        if not names:
            raise SaliscopeError("no method ticked", "tick at least one method")
        unknown = [n for n in names if n not in self.x.methods]
        if unknown:
            raise SaliscopeError(f"{', '.join(unknown)} cannot run on this model", "untick it")
        return names

    def _class(self, session: Session, cls: int | str) -> int:
        try:
            value = int(cls)
        except (TypeError, ValueError):
            value = -1
        if value not in session.classes:
            raise SaliscopeError(f"class {cls!r} is not among this photo's top-5", "pick one of the listed classes")
        return value

    def _class_choices(self, session: Session) -> list[tuple[str, int]]:
        return [(f"{p.label} — {p.probability:.1%}", p.index) for p in session.top]

    def _cards(
        self,
        session: Session,
        cls: int,
        names: Sequence[str],
        evidence: Evidence | None,
        alpha: float,
        *,
        pending: bool,
        waiting: set[str] | frozenset[str] = frozenset(),
    ) -> str:
        cards = []
        label = self.x.label(cls)
        for name in names:
            title = registry.get(name).title
            failure = self.x.failure(session, name, cls, evidence)
            e = self.x.explanation(session, name, cls, evidence)
            if e is None:
                if name in waiting:
                    cards.append(Card(name, title, waiting=True))
                else:
                    cards.append(Card(name, title, error=failure or "not explained yet"))
                continue
            view = self.x.view(name, evidence)
            report = self.x.report(session, name, cls, evidence)
            cost = e.cost
            passes = f"{cost.forward_passes} forward" + (
                f" + {cost.backward_passes} backward" if cost.backward_passes else ""
            )
            cards.append(
                Card(
                    name,
                    title,
                    view=view,
                    channels=int(e.attributions.shape[1]),
                    picture=self.x.picture(session, e, view, alpha, self.x.settings.display_side),
                    alt=f"{title} map of {label} over the photo",
                    report=report,
                    pending=pending and report is None,
                    cost=f"{cost.seconds:.2f} s · {passes} passes",
                )
            )
        p = session.probability(cls)
        heading = f"Why {label} ({cls})" + (f", {p:.1%}" if p is not None else "") + "?"
        return cards_html(cards, heading)

    def _summary(self, session: Session, cls: int, names: Sequence[str], evidence: Evidence | None) -> str:
        failed = [
            registry.get(n).title
            for n in names
            if (r := self.x.report(session, n, cls, evidence)) is not None and not r.passed
        ]
        done = f"Maps of {self.x.label(cls)} ({cls}), checked."
        return done + (f" Flags on: {', '.join(failed)}." if failed else " No flags.")


def _message(exc: SaliscopeError) -> str:
    return one_line(str(exc))


def _internal(what: str, exc: Exception) -> str:
    log.error("%s failed:\n%s", what, traceback.format_exc())
    return status_html(f"internal error while {what}: {type(exc).__name__}: {one_line(str(exc))[:300]}", "error")
