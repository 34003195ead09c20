"""Siamese embedding networks: plain ``nn.Module``s, kept apart from training.

Every network maps a batch of grayscale images shaped (N, 1, S, S), scaled to
[-1, 1], to embeddings shaped (N, D). ``forward_once`` is one tower;
``forward(a, b)`` runs both towers (shared weights) and returns both codes, as
in the PyTorch Siamese example.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class SiameseNetwork(nn.Module):
    """Base class: subclasses implement ``forward_once``."""

    #: side of the square input image the tower expects
    input_size: int = 100
    #: whether embeddings are L2-normalised (distances then lie in [0, 2])
    normalized: bool = False

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_once(a), self.forward_once(b)


def paper_trunk() -> nn.Sequential:
    """The paper's convolutional trunk: three padded 3x3 convolutions keeping 100x100."""
    return nn.Sequential(
        nn.ZeroPad2d(1),
        nn.Conv2d(1, 4, kernel_size=3),
        nn.ReLU(inplace=True),
        nn.ZeroPad2d(1),
        nn.Conv2d(4, 8, kernel_size=3),
        nn.ReLU(inplace=True),
        nn.ZeroPad2d(1),
        nn.Conv2d(8, 8, kernel_size=3),
        nn.ReLU(inplace=True),
    )


class Deshpande2020(SiameseNetwork):
    """The network of Deshpande, Minai & Kumar (2020), as in the authors' code.

    Each tower: ZeroPad(1) + Conv3x3 (1->4), ReLU, ZeroPad(1) + Conv3x3 (4->8),
    ReLU, ZeroPad(1) + Conv3x3 (8->8), ReLU, keeping 100x100; then fully
    connected 80000 -> 500 -> 500 -> 5 with ReLU between. Its 80000x500 layer
    holds 40 M of its 40.3 M parameters (about 160 MB as float32).
    """

    input_size = 100

    def __init__(self, embedding_dim: int = 5) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.cnn = paper_trunk()
        self.fc = nn.Sequential(
            nn.Linear(8 * 100 * 100, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, embedding_dim),
        )

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))


class Deshpande2020Classifier(SiameseNetwork):
    """The paper's conventional CNN baseline: the same trunk and 80000 -> 500 -> 500
    layers, with an n-way softmax head, trained fully supervised.

    ``forward_once`` returns the 500-d features under the head, so the embedder
    interface still applies; ``logits`` gives the class scores.
    """

    input_size = 100

    def __init__(self, n_classes: int = 6) -> None:
        super().__init__()
        self.embedding_dim = 500
        self.n_classes = n_classes
        self.cnn = paper_trunk()
        self.fc = nn.Sequential(
            nn.Linear(8 * 100 * 100, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, 500),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(500, n_classes)

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_once(x))


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def mean_std_pool(fmap: torch.Tensor, fast: bool = False) -> torch.Tensor:
    """Per-channel mean and standard deviation over the image: (N, C, H, W) -> (N, 2C).
    ``fast``: see ``spatial_mean_std``."""
    if fast:
        mean, std = spatial_mean_std(fmap)
        return torch.cat([mean.flatten(1), std], dim=1)
    flat = fmap.flatten(2)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)


def spatial_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (N, C, 1, 1) and unbiased standard deviation (N, C) of every map of
    ``x`` (N, C, H, W), by two plain passes: the mean, then the squared deviations.

    The same numbers as ``Tensor.std`` up to float rounding (about 1e-7), but
    PyTorch's ``std`` kernel on the CPU (a one-pass Welford update) is about ten
    times slower on these maps, channels-last above all: it took a fifth of the
    five-view model's inference time. Inference only: training keeps ``std``, so
    the training commands still remake the shipped checkpoints bit for bit.
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    count = x.shape[2] * x.shape[3]
    variance = (x - mean).square_().sum(dim=(2, 3)) / max(count - 1, 1)
    return mean, variance.sqrt()


class TextureNet(SiameseNetwork):
    """A texture embedding for one-shot matching of unseen defect classes.

    * Each image is standardised (zero mean, unit variance) before the first
      layer: NEU images of one class range from dark to bright, and the class
      lies in the texture, not in the exposure.
    * Statistics are pooled at three depths (mean and spread of every feature
      map at 25x25, 12x12 and 12x12 after two more layers), like a multi-scale
      texture descriptor: fine structure (crazing, pits) shows early, coarse
      structure (scratches, patches) late.
    * The embedding is L2-normalised, for the cosine-style contrastive losses
      it is trained with; Euclidean distances then lie in [0, 2].
    """

    input_size = 100
    normalized = True
    #: pool with ``spatial_mean_std`` (set by ``optimize_for_inference``)
    fast_statistics = False

    def __init__(
        self,
        embedding_dim: int = 128,
        width: int = 32,
        input_size: int = 100,
        fine_stage1: bool = False,
    ) -> None:
        super().__init__()
        if input_size not in (100, 200):
            raise ValueError(f"texture_net takes 100 or 200 pixel inputs, not {input_size}")
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        w = width
        # Both stems end at 50x50 with w channels. At 200 pixels (NEU's own size)
        # the first layer sees the finest texture (crazing, pits) before any
        # resizing blurs it, for about the same multiply-adds.
        second_stride = 2 if input_size == 200 else 1
        self.stem = nn.Sequential(
            _conv_bn(1, w // 2, stride=2), _conv_bn(w // 2, w, stride=second_stride)
        )
        # ``fine_stage1`` moves the first max pool behind stage 1 and adds one before
        # stage 3: stage 1 runs at 50x50, stage 2 at 25x25, stage 3 at 12x12, as the
        # five-view model's quadrant views see an image, for about 1.5x the
        # multiply-adds; the weights keep their names and shapes, so such a student
        # still starts from its teacher.
        first_pool = nn.Identity() if fine_stage1 else nn.MaxPool2d(2)
        self.stage1 = nn.Sequential(first_pool, _conv_bn(w, w))  # 25x25 (fine: 50x50)
        self.stage2 = nn.Sequential(nn.MaxPool2d(2), _conv_bn(w, 2 * w))  # 12x12 (fine: 25x25)
        # a Sequential, so that optimize_for_inference's pool swap reaches its pool
        self.stage3_pool = nn.Sequential(nn.MaxPool2d(2) if fine_stage1 else nn.Identity())
        self.stage3 = nn.Sequential(_conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w))  # 12x12
        pooled = 2 * (w + 2 * w + 4 * w)
        self.head = nn.Sequential(
            nn.Linear(pooled, 4 * w),
            nn.BatchNorm1d(4 * w),
            nn.ReLU(inplace=True),
            nn.Linear(4 * w, embedding_dim),
        )

    def feature_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The maps after each of the three stages, whose statistics are pooled."""
        if self.fast_statistics:
            # x has one channel, so the statistics of its map are the image's
            mean, std = spatial_mean_std(x)
            x = (x - mean) / (std.view(-1, 1, 1, 1) + 1e-5)
        else:
            flat = x.flatten(1)
            x = (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + 1e-5)
        s1 = self.stage1(self.stem(x))
        s2 = self.stage2(s1)
        return s1, s2, self.stage3(self.stage3_pool(s2))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.feature_maps(x)
        return torch.cat([mean_std_pool(m, self.fast_statistics) for m in maps], dim=1)

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)), dim=1)


class MultiViewEmbedding(SiameseNetwork):
    """One embedding from five views of an image: the whole image at the
    tower's own scale, and its four quadrants at twice that resolution.

    The tower is trained on views of 100x100; an image given at 200x200 (NEU's
    own size) is seen whole, downscaled, and as four 100x100 quadrants at full
    resolution, where fine textures (crazing, small pits) are not blurred away.
    The view codes are averaged and renormalised, like a bag of local texture
    descriptors. It costs five tower passes per image, so it is a trade
    of speed for accuracy, measured in docs/model.md.
    """

    normalized = True
    #: below this many images, all views go through the tower in one pass
    SMALL_BATCH = 8

    def __init__(self, tower: SiameseNetwork) -> None:
        super().__init__()
        if not tower.normalized:
            raise ValueError("multi-view embedding averages unit vectors: the tower must normalise")
        self.tower = tower
        self.input_size = 2 * tower.input_size
        self.embedding_dim = int(getattr(tower, "embedding_dim", 0))

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = self.tower.input_size
        if x.shape[-2:] != (2 * size, 2 * size):
            x = F.interpolate(x, size=(2 * size, 2 * size), mode="bilinear", align_corners=False)
        whole = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        return [whole] + [x[..., r : r + size, c : c + size] for r in (0, size) for c in (0, size)]

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        views = self.views(x)
        if n < self.SMALL_BATCH:
            # few images: one pass over all views costs less call overhead
            codes = self.tower.forward_once(torch.cat(views)).view(len(views), n, -1)
        else:
            # many: a pass per view keeps each pass's feature maps small enough for the
            # CPU caches (about 15% more images per second at batch 64 here)
            codes = torch.stack([self.tower.forward_once(v) for v in views])
        return F.normalize(codes.mean(dim=0), dim=1)


#: how an image is turned into views at inference (checkpoint metadata "views")
VIEWS = ("whole", "whole+quadrants")


def with_views(tower: SiameseNetwork, views: str) -> SiameseNetwork:
    """The network that embeds whole images the way ``views`` names."""
    if views == "whole":
        return tower
    if views == "whole+quadrants":
        return MultiViewEmbedding(tower)
    raise ValueError(f"unknown views {views!r}; choose one of: {', '.join(VIEWS)}")


class CenteredEmbedding(SiameseNetwork):
    """Embeddings moved by the mean embedding of the training images, then renormalised.

    A network trained on a few classes puts every image, of any class, near
    the same direction: the part of the code all training images share. On
    the unit sphere that common part crowds the classes it never saw together.
    Subtracting it before renormalising (CL2N in Wang et al., "SimpleShot",
    2019) spreads them out, at no cost per image. On the leave-one-class-out
    proxy it raised mean 3-way one-shot accuracy by 0.7 (five views) and 1.4
    points (one view); on the unseen NEU classes it did not (docs/experiments.md, round 3).
    The mean comes from training images only, never from the images compared.
    """

    normalized = True

    def __init__(self, network: SiameseNetwork, center: torch.Tensor) -> None:
        super().__init__()
        if not network.normalized:
            raise ValueError("centring works on unit embeddings: the network must normalise")
        self.network = network
        self.input_size = network.input_size
        self.embedding_dim = int(getattr(network, "embedding_dim", 0))
        self.register_buffer("center", center.detach().float().reshape(1, -1))

    @property
    def tower(self) -> SiameseNetwork:
        """The trained network under the inference wrappers (what checkpoints store)."""
        return getattr(self.network, "tower", self.network)

    def forward_once(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.network.forward_once(x) - self.center, dim=1)


def inference_network(
    tower: SiameseNetwork, views: str, center: torch.Tensor | None = None
) -> SiameseNetwork:
    """The trained tower as it embeds images: through its views, then centred when
    a training mean is given (checkpoint metadata "views" and "center")."""
    network = with_views(tower, views)
    return network if center is None else CenteredEmbedding(network, center)


class StridedMaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` computed as two element-wise maxima of strided views.

    Same results (odd edges dropped, as MaxPool2d does), but on a CPU about ten
    times faster than PyTorch's pooling kernel for these small feature maps.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def is_plain_2x2_max_pool(module: nn.Module) -> bool:
    def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
        return (v, v) if isinstance(v, int) else tuple(v)

    return (
        isinstance(module, nn.MaxPool2d)
        and pair(module.kernel_size) == (2, 2)
        and pair(module.stride) == (2, 2)
        and pair(module.padding) == (0, 0)
        and pair(module.dilation) == (1, 1)
        and not module.ceil_mode
        and not module.return_indices
    )


def optimize_for_inference(network: nn.Module) -> nn.Module:
    """Fold batch norm into convolutions, use the fast 2x2 max pool, pool
    ``texture_net``'s statistics in two plain passes, and keep convolution
    weights channels-last (eval only).

    Channels-last lets oneDNN's CPU convolutions skip layout conversions: about
    1.4x the images per second for ``texture_net`` at batch 64 on this machine's
    CPU, the same outputs. The two-pass statistics (``spatial_mean_std``) gave
    1.26x for the default model and 1.20x for the five-view model (codes within
    3e-7 of ``torch.std``'s).
    """
    fuse_conv_bn(network)
    for module in network.modules():
        if isinstance(module, TextureNet):
            module.fast_statistics = True
        if isinstance(module, nn.Sequential):
            for i, child in enumerate(module):
                if is_plain_2x2_max_pool(child):
                    module[i] = StridedMaxPool2x2()
    return network.to(memory_format=torch.channels_last)


def fuse_conv_bn(network: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that follows a Conv2d into the convolution (eval only).

    Inference then skips a full pass over each feature map, which on a CPU,
    where these small networks are bound by memory traffic, is a large share
    of the time. The outputs are the same up to float rounding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if network.training:
        raise ValueError("fuse only a network in eval mode")
    for module in network.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module)
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return network


ARCHITECTURES: dict[str, Callable[..., SiameseNetwork]] = {
    "deshpande2020": Deshpande2020,
    "deshpande2020_cnn": Deshpande2020Classifier,
    "texture_net": TextureNet,
}


def build_network(arch: str, **kwargs: int) -> SiameseNetwork:
    """Build a network by its architecture name (as stored in checkpoints)."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {known}") from None
    return factory(**kwargs)
