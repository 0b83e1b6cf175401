"""Lightning training: a thin wrapper around :class:`emoctx.models.network.EmotionNet`."""
