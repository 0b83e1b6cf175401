"""Models: timm backbones, weight import, fusion, the face stream's parts, the ``nn.Module`` emotion network."""

from emoctx.models.backbones import StreamConfig, build_backbone, load_backbone_weights
from emoctx.models.face import FaceConfig, FeatureMap, LandmarkAttention
from emoctx.models.fusion import FUSIONS, build_fusion
from emoctx.models.network import EmotionNet

__all__ = [
    "FUSIONS",
    "EmotionNet",
    "FaceConfig",
    "FeatureMap",
    "LandmarkAttention",
    "StreamConfig",
    "build_backbone",
    "build_fusion",
    "load_backbone_weights",
]
