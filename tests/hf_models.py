"""Tiny Hugging Face image classifiers built from small configurations (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

LABELS = ("cat", "dog", "fox")
VIT_LIKE = dict(
    image_size=32,
    patch_size=8,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    id2label=dict(enumerate(LABELS)),
    label2id={name: i for i, name in enumerate(LABELS)},
)


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


def vit():
    import transformers as T

    return _seeded(lambda: T.ViTForImageClassification(T.ViTConfig(**VIT_LIKE)))


def deit_distilled():
    import transformers as T

    return _seeded(lambda: T.DeiTForImageClassificationWithTeacher(T.DeiTConfig(**VIT_LIKE)))


def beit():
    import transformers as T

    return _seeded(lambda: T.BeitForImageClassification(T.BeitConfig(**VIT_LIKE, use_mean_pooling=True)))


def dinov2():
    import transformers as T

    return _seeded(lambda: T.Dinov2ForImageClassification(T.Dinov2Config(**VIT_LIKE)))


def convnext():
    import transformers as T

    config = T.ConvNextConfig(
        num_channels=3,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_stages=2,
        id2label=VIT_LIKE["id2label"],
        label2id=VIT_LIKE["label2id"],
    )
    return _seeded(lambda: T.ConvNextForImageClassification(config))


def swin():
    import transformers as T

    config = T.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4)
    return _seeded(lambda: T.SwinForImageClassification(config))


def save_vit(folder: Path, processor_size: int = 32) -> Path:
    """A ``save_pretrained`` folder: the tiny ViT, its labels and a ViT image processor (mean = std = 0.5)."""
    import transformers as T

    vit().save_pretrained(folder)
    T.ViTImageProcessor(size={"height": processor_size, "width": processor_size}).save_pretrained(folder)
    return folder
