"""A tiny CNN and a trainer for it: enough to learn the shortcut benchmark on a CPU in about a minute.

The trained model carries ``preprocess`` (a :class:`~saliscope.models.preprocess.Preprocess` whose mean
and std are the training images') and ``labels`` (the class folders' names), the attributes every
saliscope tool reads, so ``saliscope.save_model(model, path)`` gives a file the explainers and the CLI load
safely as is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.devices import check_device
from ..core.errors import InputError
from ..core.model_state import explaining, model_device
from ..models.preprocess import Preprocess
from .folders import class_folders, load_folder
from .rrr import MaskLike, RRRKind, as_mask, rrr_loss


class TinyCNN(nn.Module):
    """Three 3×3 conv layers (GELU; max-pool after the first two), global average pool, linear.

    ``(B, 3, H, W)`` → ``(B, n_classes)`` logits, for any ``H, W`` ≥ 4. ``features`` ends at
    ``H/4 × W/4`` with ``4 · width`` channels: the layer the CAMs pick automatically. Weights are drawn
    from a generator seeded with ``seed``; the global random state is left untouched.
    """

    def __init__(
        self,
        n_classes: int = 2,
        *,
        width: int = 16,
        preprocess: Preprocess | None = None,
        labels: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_classes < 2 or width < 1:
            raise InputError(
                f"TinyCNN needs n_classes >= 2 and width >= 1, got {n_classes}, {width}", "pass e.g. n_classes=2"
            )
        # GELU, not ReLU: a ReLU net can hide its use of a region from the input gradient behind
        # saturated gates (units switched off both with and without the artefact), which the RRR penalty
        # cannot see. Measured on the shortcut benchmark (24 epochs, RRR weight 1000, seeds 0 / 1): the
        # swapped-test accuracy was 0.965 / 0.66 with ReLU and 1.0 / 1.0 with GELU.
        # Module constructors draw their default init from the global generator; fork it so building
        # a TinyCNN never moves the caller's random state, then draw the real weights from our own.
        with torch.random.fork_rng(devices=[]):
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1),
                nn.GELU(),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.GELU(),
                nn.MaxPool2d(2),
                nn.Conv2d(2 * width, 4 * width, 3, padding=1),
                nn.GELU(),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(4 * width, n_classes)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=g)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            nn.init.normal_(self.classifier.weight, std=0.01, generator=g)
            nn.init.zeros_(self.classifier.bias)
        names = tuple(labels) if labels is not None else tuple(f"class_{k}" for k in range(n_classes))
        if len(names) != n_classes:
            raise InputError(f"{len(names)} labels for {n_classes} classes", "pass one label per class")
        self.preprocess: Preprocess = preprocess if preprocess is not None else Preprocess(size=64, resize=64)
        self.labels: tuple[str, ...] = names

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))

    def rebuild_args(self) -> dict[str, int]:
        """The constructor arguments that fix the architecture (``saliscope.save_model`` stores them)."""
        first = self.features[0]
        assert isinstance(first, nn.Conv2d)
        return {"n_classes": int(self.classifier.out_features), "width": int(first.out_channels)}


def train_tiny_cnn(
    train_dir: str | os.PathLike[str],
    *,
    epochs: int = 24,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    rrr_weight: float = 0.0,
    irrelevant_mask: MaskLike | None = None,
    rrr_kind: RRRKind = "gradient",
    width: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> TinyCNN:
    """Train a :class:`TinyCNN` on an ImageFolder-style directory; returned in eval mode.

    Args:
        train_dir: one sub-folder of images per class (class order = sorted folder names).
        epochs: passes over the training images (Adam; plain cross-entropy unless ``rrr_weight`` > 0).
        batch_size: images per optimiser step.
        lr: Adam's learning rate.
        seed: fixes the initial weights and the batch order.
        rrr_weight: weight of the right-for-the-right-reasons penalty (:func:`~saliscope.train.rrr_loss`);
            0 trains plainly.
        irrelevant_mask: ``(H, W)`` region, in the images' pixels, the model must not use (e.g.
            ``dataset.artefact_mask()``); the same for every image. Needed when ``rrr_weight`` > 0.
        rrr_kind: ``"gradient"`` (Ross et al. 2017) or ``"gradcam"``.
        width: channels of the first conv layer (the others have 2× and 4×).
        device: where to train.
        progress: show a tqdm bar over the epochs.
    """
    if rrr_weight > 0 and irrelevant_mask is None:
        raise InputError("rrr_weight > 0 needs an irrelevant_mask", "pass irrelevant_mask=dataset.artefact_mask()")
    if rrr_weight <= 0 and irrelevant_mask is not None:
        raise InputError(
            "an irrelevant_mask was given but rrr_weight is 0, so it would be ignored", "pass rrr_weight=1000.0 or so"
        )
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError(
            f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}", "e.g. epochs=24"
        )
    where = check_device(device)
    _, classes = class_folders(train_dir)
    labels = tuple(name for name, _ in classes)
    if len(labels) < 2:
        raise InputError(f"{train_dir} has one class ({labels[0]})", "a classifier needs at least two class folders")
    from ..io import load_image  # io stays out of `import saliscope.train` until images are read

    side = min(load_image(classes[0][1][0]).size)
    # Read once in pixel space, then normalise with the training set's own statistics (rounded, so
    # the saved preprocess is readable and gives exactly the tensors trained on).
    pixels, y, _ = load_folder(train_dir, Preprocess(size=side, resize=side, mean=(0, 0, 0), std=(1, 1, 1)), labels)
    mean = tuple(round(float(v), 4) for v in pixels.mean(dim=(0, 2, 3)))
    std = tuple(max(round(float(v), 4), 1e-3) for v in pixels.std(dim=(0, 2, 3)))
    preprocess = Preprocess(size=side, resize=side, mean=mean, std=std)  # type: ignore[arg-type]
    x = preprocess.normalize(pixels).to(where)
    y = y.to(where)
    # Checked against the images once, before any training: (1, 1, H, W), broadcast over every batch.
    mask = None if irrelevant_mask is None else as_mask(irrelevant_mask, x[:1])

    model = TinyCNN(len(labels), width=width, preprocess=preprocess, labels=labels, seed=seed).to(where)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    order = torch.Generator().manual_seed(int(seed) + 1)
    bar = _bar(epochs, progress)
    model.train()
    for _ in range(epochs):
        total, count = 0.0, 0
        for idx in torch.randperm(len(y), generator=order).split(batch_size):
            xb, yb = x[idx.to(where)], y[idx.to(where)]
            if mask is not None:
                loss = rrr_loss(model, xb, yb, mask, weight=rrr_weight, kind=rrr_kind)
            else:
                loss = F.cross_entropy(model(xb), yb)
            # Our own model: gradients are taken with autograd.grad and handed to the optimiser, the
            # same route the library takes everywhere (no .backward()).
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        if bar is not None:
            bar.set_postfix(loss=f"{total / count:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    for p in params:
        p.grad = None
    return model.eval()


def evaluate_accuracy(model: nn.Module, data_dir: str | os.PathLike[str], *, batch_size: int = 256) -> float:
    """Fraction of the images under ``data_dir`` (one sub-folder per class) that ``model`` classifies right.

    Images are read with ``model.preprocess``; folder names are matched to ``model.labels`` when the
    model has them (else the sorted folder order is the class order). The model runs in eval mode,
    restored afterwards, in chunks of ``batch_size``.
    """
    preprocess = getattr(model, "preprocess", None)
    if not isinstance(preprocess, Preprocess):
        raise InputError(
            "the model has no .preprocess telling how to read images",
            "load it with saliscope.load_model(path), or set model.preprocess = Preprocess(...)",
        )
    labels = getattr(model, "labels", None)
    x, y, _ = load_folder(data_dir, preprocess, tuple(labels) if labels is not None else None)
    device = model_device(model)
    correct = 0
    with explaining(model), torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            correct += int((model(xb.to(device)).argmax(dim=1).cpu() == yb).sum())
    return correct / len(y)


def _bar(epochs: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc="training", unit="epoch", leave=False)
