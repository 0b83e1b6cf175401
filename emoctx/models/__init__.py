"""Models: backbones by timm name, weight import, fusion, and the plain ``nn.Module`` emotion network."""

from emoctx.models.backbones import StreamConfig, build_backbone, load_backbone_weights
from emoctx.models.fusion import FUSIONS, build_fusion
from emoctx.models.network import EmotionNet

__all__ = ["FUSIONS", "EmotionNet", "StreamConfig", "build_backbone", "build_fusion", "load_backbone_weights"]
