"""Models: timm backbones, weight import, fusion, the face stream's parts, the network and its outputs."""

from emoctx.models.backbones import StreamConfig, build_backbone, load_backbone_weights
from emoctx.models.face import FaceConfig, FeatureMap, LandmarkAttention
from emoctx.models.fusion import FUSIONS, build_fusion
from emoctx.models.network import EmotionNet
from emoctx.models.outputs import ScoringNet, scores_from_logits, vad_ratings

__all__ = [
    "FUSIONS",
    "EmotionNet",
    "FaceConfig",
    "FeatureMap",
    "LandmarkAttention",
    "ScoringNet",
    "StreamConfig",
    "build_backbone",
    "build_fusion",
    "load_backbone_weights",
    "scores_from_logits",
    "vad_ratings",
]
