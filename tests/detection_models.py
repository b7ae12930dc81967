"""Detectors for the tests: a hand-built one whose answer is known, and torchvision's families with random
weights at small sizes (no download: ``weights=None, weights_backbone=None``).

Random-weight detectors score almost every box near chance, so their score thresholds are set to 0 here:
every image then has detections (the top ``detections_per_img``), and ``DetectionTarget(0)`` exists.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import detection

SIZE = 32
LO, HI = 4, 28  # the patch: rows and columns LO:HI of a SIZE × SIZE image
PATCH_VALUE = 0.6  # channel 0 inside the patch of the test images


class PatchDetector(nn.Module):
    """One box per image, around the patch; its score is ``sigmoid(gain · (m - centre))`` where ``m`` is the mean
    of feature channel 0 over the patch (the features: a 1×1 convolution that copies the input, hand-set, and a
    ReLU, the identity on images in [0, 1]).
    Nothing outside the patch, and no other channel, changes the score. Like a real detector it drops a box
    whose score is below ``threshold``, and carries a dropout that only acts in training mode.

    With ``centre = PATCH_VALUE / 2`` the box is kept exactly when more than about half of the patch is visible
    (masked pixels become 0), which makes the D-RISE weight of a random mask depend on the patch only.
    """

    labels = ("background", "patch")

    def __init__(self, gain: float = 20.0, centre: float = PATCH_VALUE / 2, threshold: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1)
        self.act = nn.ReLU()  # the identity on images in [0, 1]; there for guided backprop
        self.head = nn.Linear(1, 1)
        self.drop = nn.Dropout(0.5)
        self.threshold = threshold
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features.bias.zero_()
            self.head.weight.fill_(gain)
            self.head.bias.fill_(-gain * centre)
        self.register_buffer("box", torch.tensor([[float(LO), float(LO), float(HI), float(HI)]]))

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        features = self.drop(self.act(self.features(images)))
        mean = features[:, 0, LO:HI, LO:HI].mean((1, 2))
        scores = torch.sigmoid(self.head(mean[:, None]))[:, 0]
        out = []
        for i in range(images.shape[0]):
            keep = (scores[i : i + 1] >= self.threshold).nonzero()[:, 0]
            out.append(
                {
                    "boxes": self.box[keep],
                    "labels": torch.ones(len(keep), dtype=torch.long, device=images.device),
                    "scores": scores[i : i + 1][keep],
                }
            )
        return out


def patch_images(n: int = 2, seed: int = 0) -> Tensor:
    """``(n, 3, SIZE, SIZE)`` random images whose channel 0 is PATCH_VALUE inside the patch."""
    x = torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    x[:, 0, LO:HI, LO:HI] = PATCH_VALUE
    return x


def patch_mask() -> Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[LO:HI, LO:HI] = True
    return mask


def positive_share(maps: Tensor, mask: Tensor) -> Tensor:
    """Per image of ``maps`` ``(B, C, H, W)``: the share of the positive mass (channels summed) inside ``mask``."""
    positive = maps.sum(1).clamp(min=0)
    return (positive * mask).sum((1, 2)) / positive.sum((1, 2))


# -- torchvision's families, small ---------------------------------------------------------------------
_SMALL = {"min_size": 64, "max_size": 64}
_RPN = {"rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 10, "box_detections_per_img": 5}
_ONE_STAGE = {"detections_per_img": 5, "topk_candidates": 20, "score_thresh": 0.0}
_RANDOM = {"weights": None, "weights_backbone": None}


def _resnet18_fpn(p6p7: bool) -> nn.Module:
    """The feature pyramid torchvision builds for RetinaNet / FCOS (P3-P7) or Mask / Keypoint R-CNN (P2-P6),
    on a ResNet-18 instead of a ResNet-50: the same levels for the heads, a fraction of the cost."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    if p6p7:
        return resnet_fpn_backbone(
            backbone_name="resnet18",
            weights=None,
            trainable_layers=5,
            returned_layers=[2, 3, 4],
            extra_blocks=LastLevelP6P7(256, 256),
        )
    return resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)


def _mask_rcnn() -> nn.Module:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    heads = {"mask_head": MaskRCNNHeads(256, [16, 16], 1), "mask_predictor": MaskRCNNPredictor(16, 16, 3)}
    boxes = FastRCNNPredictor(1024, 3)
    return detection.MaskRCNN(
        _resnet18_fpn(False), None, box_predictor=boxes, box_score_thresh=0.0, **heads, **_SMALL, **_RPN
    )


def _keypoint_rcnn() -> nn.Module:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor

    heads = {"keypoint_head": KeypointRCNNHeads(256, [16, 16]), "keypoint_predictor": KeypointRCNNPredictor(16, 3)}
    boxes = FastRCNNPredictor(1024, 2)
    return detection.KeypointRCNN(
        _resnet18_fpn(False), None, box_predictor=boxes, box_score_thresh=0.0, **heads, **_SMALL, **_RPN
    )


def _fcn() -> nn.Module:
    from torchvision.models import resnet18
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCNHead

    body = IntermediateLayerGetter(resnet18(), {"layer4": "out", "layer3": "aux"})
    return torchvision.models.segmentation.FCN(body, FCNHead(512, 3), FCNHead(256, 3))


# torchvision's own builders where they are light; for the ResNet-50 families its model classes on a ResNet-18
# (with small mask / keypoint heads): the same classes, transforms, anchors, poolers and post-processing.
BUILDERS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": lambda: detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        **_RANDOM, num_classes=3, box_score_thresh=0.0, **_SMALL, **_RPN
    ),
    "ssdlite320_mobilenet_v3_large": lambda: detection.ssdlite320_mobilenet_v3_large(
        **_RANDOM, num_classes=3, **_ONE_STAGE
    ),
    "retinanet": lambda: detection.RetinaNet(_resnet18_fpn(True), 3, **_SMALL, **_ONE_STAGE),
    "fcos": lambda: detection.FCOS(_resnet18_fpn(True), 3, **_SMALL, **_ONE_STAGE),
    "maskrcnn": _mask_rcnn,
    "keypointrcnn": _keypoint_rcnn,
}

SEGMENTERS = {
    "deeplabv3_mobilenet_v3_large": lambda: torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        **_RANDOM, num_classes=3, aux_loss=True
    ),
    "fcn": _fcn,
    "lraspp_mobilenet_v3_large": lambda: torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        **_RANDOM, num_classes=3
    ),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """A torchvision detector or segmenter with random weights drawn from ``seed``, in eval mode.

    SSDlite's randomly initialised backbone (MobileNet-V3 with its batch norms) gives the heads the same
    features everywhere, so every box scores 1/3 whatever the image; its backbone gets :func:`lively`
    weights instead, which carry the image through."""
    table = {**BUILDERS, **SEGMENTERS}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = table[name]().eval()
    if name.startswith("ssdlite"):
        lively(model.get_submodule("backbone"), seed)
    return model


def photos(n: int = 2, height: int = 56, width: int = 72, seed: int = 0) -> Tensor:
    """``(n, 3, height, width)`` pixels in [0, 1], as torchvision's detectors take them."""
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights that carry a signal through a deep net: every convolution and linear layer drawn with
    variance 2 / fan_in, every batch norm the identity. torchvision's own random initialisation is for
    training (heads near zero, a prior on the classifier): with it most scores are the same for any image."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
    return model
