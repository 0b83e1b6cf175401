"""Writes the two-stream model files of this folder and the outputs they gave when written.

They were written by emoctx 0.1.0 at commit 7d5b7a5 (model format v1, body + scene streams), before the face
stream existed: ``test_model_files.py`` checks that every later version still loads them and computes the same
outputs. Re-running this script with a later emoctx would defeat that purpose; it is kept to show how the files
were made. Run from the repository root: ``python tests/data/two_stream_v1/make.py``.
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from emoctx.checkpoint import describe, save_model
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet

HERE = Path(__file__).parent
TINY = {"channel_multiplier": 0.25, "depth_multiplier": 0.5}  # a 12k-parameter timm test network
CASES = {
    "concat": {"fusion": "concat"},
    "gated": {"fusion": "gated"},
    "attention": {"fusion": "attention", "fusion_kwargs": {"heads": 2}, "vad_output": "tenths"},
}

torch.manual_seed(0)
inputs = {"body": torch.randn(3, 3, 32, 32), "scene": torch.randn(3, 3, 48, 48)}
expected = {f"input_{k}": v for k, v in inputs.items()}
for name, options in CASES.items():
    net = EmotionNet(
        {
            "body": StreamConfig("test_efficientnet", input_size=32, kwargs=TINY),
            "scene": StreamConfig("test_efficientnet", input_size=48, kwargs=TINY),
        },
        hidden=16,
        dropout=0.1,
        **options,
    )
    net.train()
    for _ in range(3):  # move the batch-norm statistics away from their initial values
        net(inputs)
    net.eval()
    with torch.no_grad():
        out = net(inputs)
    save_model(HERE / f"{name}.safetensors", net, describe(net, training={"note": "fixture"}))
    expected[f"{name}_logits"] = out["logits"].contiguous()
    expected[f"{name}_vad"] = out["vad"].contiguous()
save_file(expected, str(HERE / "expected.safetensors"))
