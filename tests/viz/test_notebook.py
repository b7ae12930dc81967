"""Explanations in a notebook: what ``show()`` draws (pixel for pixel: the overlay over the input or the photo,
the model's crop), the rich display, and that core reaches viz only on use."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

import saliscope as ss
from saliscope.core.cost import Cost
from saliscope.core.errors import InputError
from saliscope.core.views import DEFAULT_ALPHA
from saliscope.models.preprocess import Preprocess
from saliscope.train import TinyCNN
from saliscope.viz import display_hint, overlay
from saliscope.viz.notebook import InlineFigure, input_photo

LABELS = ("apple", "bird", "cat")


@pytest.fixture(scope="module")
def model() -> TinyCNN:
    # 32 px input from a shorter side of 40: on a wider photo the model sees a centre square, a part of it.
    return TinyCNN(
        3, width=4, preprocess=Preprocess(size=32, resize=40, mean=(0.5,) * 3, std=(0.25,) * 3), labels=LABELS
    ).eval()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8))  # 80 wide, 50 high


def drawn(figure: Figure, k: int = 0) -> np.ndarray:
    """The RGB array shown by the k-th image axes of a figure."""
    axes = [ax for ax in figure.axes if ax.images]
    return np.asarray(axes[k].images[0].get_array())


def test_an_explanation_keeps_its_input_by_reference_with_the_models_preprocess_and_labels(model, photo) -> None:
    x = model.preprocess([photo, photo.rotate(180)])
    e = ss.Gradient(model).explain(x, 1)
    assert e.inputs is not None and e.inputs.data_ptr() == x.data_ptr()  # a view of the caller's tensor, no copy
    assert e.preprocess is model.preprocess and e.labels is model.labels
    one = e[1]
    assert torch.equal(one.inputs, x[1:2]) and one.preprocess is model.preprocess
    # Not part of what an explanation is: equality and the summary ignore them.
    assert "inputs" not in e.summary() and "inputs=" not in repr(e)


def test_show_without_a_photo_draws_the_map_over_the_un_normalised_input(model, photo) -> None:
    x = model.preprocess(photo)
    e = ss.IntegratedGradients(model, n_steps=4).explain(x, 2)
    figure = e.show()
    assert isinstance(figure, InlineFigure)
    view = display_hint("integrated-gradients")
    expected = overlay(model.preprocess.to_pil(x), e.saliency(view.reduce, view.evidence)[0, 0], signed=True)
    assert np.array_equal(drawn(figure), np.asarray(expected))
    assert figure.axes[0].get_title() == "cat (2)"
    assert "Integrated Gradients" in figure.get_suptitle() and "signed" in figure.get_suptitle()
    assert not any(isinstance(p, Rectangle) for p in figure.axes[0].patches)  # the input is all the model saw


def test_show_over_the_photo_places_the_map_on_the_models_crop_and_outlines_it(model, photo) -> None:
    e = ss.GradCAM(model).explain(model.preprocess(photo), 0)
    box = model.preprocess.crop_box(*photo.size)
    assert box[0] > 0  # the crop is a part of the photo
    figure = e.show(photo)
    expected = overlay(photo, e.saliency("sum", "positive")[0, 0], crop_box=box, signed=False, alpha=DEFAULT_ALPHA)
    assert np.array_equal(drawn(figure), np.asarray(expected))
    (outline,) = [p for p in figure.axes[0].patches if isinstance(p, Rectangle)]
    assert outline.get_xy() == pytest.approx(box[:2]) and outline.get_width() == pytest.approx(box[2] - box[0])
    assert outline.get_linestyle() == "--"


def test_show_takes_the_photo_as_a_path_and_the_evidence_asked_for(model, photo, tmp_path) -> None:
    path = tmp_path / "p.png"
    photo.save(path)
    e = ss.IntegratedGradients(model, n_steps=4).explain(model.preprocess(photo), 1)
    figure = e.show(str(path), evidence="negative")
    box = model.preprocess.crop_box(*photo.size)
    expected = overlay(photo, e.saliency("sum", "negative")[0, 0], crop_box=box, signed=False)
    assert np.array_equal(drawn(figure), np.asarray(expected))
    assert "negative part" in figure.get_suptitle()
    with pytest.raises(InputError, match="unknown evidence"):
        e.show(evidence="sideways")  # type: ignore[arg-type]


def test_show_into_an_axes_draws_one_sample_there_and_returns_its_figure(model, photo) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = Figure()
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 2, 2)
    x = model.preprocess([photo, photo])
    e = ss.Gradient(model).explain(x, 0)
    assert e[1].show(ax=ax) is figure and ax.images
    with pytest.raises(InputError, match=r"e\[i\]\.show\(ax=ax\)"):
        e.show(ax=ax)


def test_a_batch_draws_one_panel_per_sample_over_its_own_photo(model, photo) -> None:
    other = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    e = ss.Gradient(model).explain(model.preprocess([photo, other]), 1)
    figure = e.show([photo, other])
    box = model.preprocess.crop_box(*photo.size)
    for k, p in enumerate((photo, other)):
        expected = overlay(p, e.saliency("max-abs", "absolute")[k, 0], crop_box=box, signed=False)
        assert np.array_equal(drawn(figure, k), np.asarray(expected))
    with pytest.raises(InputError, match="one photo per sample"):
        e.show(photo)


def test_the_rich_display_is_one_drawing_as_png_and_html(model, photo) -> None:
    e = ss.GradCAM(model).explain(model.preprocess(photo), 1)
    bundle = e._repr_mimebundle_()
    png = bundle["image/png"]
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert png == e._repr_png_()  # the same figure, drawn the same way
    page = bundle["text/html"]
    import base64

    assert base64.b64encode(png).decode() in page and "<figcaption" in page
    assert "Grad-CAM" in page and "bird (1)" in page and "forward" in page
    assert page == e._repr_html_()


def test_a_large_batch_shows_its_first_samples_and_says_so(model) -> None:
    x = torch.randn(10, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    e = ss.Gradient(model).explain(x, 0)
    assert e.inputs is not None
    html = e._repr_html_()
    assert "(10 samples)" in html
    figure = e.show()  # show() draws them all
    assert sum(1 for ax in figure.axes if ax.images) == 10


def test_an_explanation_made_by_hand_without_an_input_shows_its_map_on_grey(model) -> None:
    e = ss.Gradient(model).explain(torch.zeros(1, 3, 32, 32), 0)
    bare = type(e)(
        torch.linspace(-1, 1, 32 * 32).view(1, 1, 32, 32), e.target, "handmade", {}, Cost(0, 0, 0, 0.0, None)
    )
    assert bare.inputs is None and input_photo(bare, 0) is None
    figure = bare.show()
    assert drawn(figure).shape == (32, 32, 3)
    assert figure.get_suptitle().startswith("handmade")  # not a registered method: its own name
    assert Image.open(io.BytesIO(bare._repr_png_())).size[0] > 100


def test_an_input_without_a_preprocess_is_stretched_per_channel(model) -> None:
    x = torch.stack([torch.linspace(-3, 5, 16 * 16).view(16, 16)] * 3)[None]
    x[0, 1] *= 0.5  # per-channel scale: stretching undoes it
    e = ss.Gradient(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 256, 2))).explain(x, 0)
    assert e.preprocess is None
    arr = np.asarray(input_photo(e, 0))
    assert arr.min() == 0 and arr.max() == 255 and np.array_equal(arr[..., 0], arr[..., 1])


def test_figures_are_made_without_pyplot_so_a_notebook_shows_them_once(model, photo) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figure = ss.Gradient(model).explain(model.preprocess(photo), 0).show(photo)
    assert plt.get_fignums() == before  # no figure manager: nothing shows it a second time at the cell's end
    assert Image.open(io.BytesIO(figure._repr_png_())).format == "PNG"
    assert matplotlib.get_backend()  # the backend was never switched


def test_core_imports_viz_only_inside_functions() -> None:
    core = Path(ss.__file__).parent / "core"
    for path in sorted(core.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom):
                assert "viz" not in (node.module or ""), f"{path.name} imports {node.module} at module level"
            if isinstance(node, ast.If):  # TYPE_CHECKING blocks may name matplotlib, never saliscope.viz
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom):
                        assert "viz" not in (inner.module or "")
