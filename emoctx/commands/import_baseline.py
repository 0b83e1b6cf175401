r"""Import the common PyTorch EMOTIC baseline's trained model (Tandon-A/emotic) as an emoctx model file.

DIR holds the baseline's released files: model_context1.pth, model_body1.pth, model_emotic1.pth (whole pickled
modules) and val_thresholds.npy (its per-category thresholds; optional). Each file can also be given on its own.
The output is one self-describing model.safetensors that 'emoctx predict', 'evaluate', 'export' and 'calibrate'
use like any emoctx model; it feeds the model as the baseline did (its input sizes 224/128, its own
normalisation constants and cv2.resize's bilinear resizing) and stores its thresholds.

No code from the files runs: the pickles are read with torch.load(weights_only=True) and an allow-list of the
torch/torchvision layers they hold (the baseline's own Emotic class is read as plain state), the thresholds with
numpy.load(allow_pickle=False). A file holding anything else is refused with the name of what it holds.

Examples:
  emoctx import-baseline downloads/emotic_models --out models/emotic_baseline.safetensors
  emoctx import-baseline --context m/model_context1.pth --body m/model_body1.pth --fusion m/model_emotic1.pth \
      --thresholds results/val_thresholds.npy --out models/emotic_baseline.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "import the common PyTorch EMOTIC baseline's trained model (its .pth pickles) as model.safetensors, safely"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Source folder or files, output and options."""
    parser.add_argument(
        "dir",
        type=Path,
        nargs="?",
        default=None,
        help="folder with model_context1.pth, model_body1.pth, model_emotic1.pth and val_thresholds.npy",
    )
    parser.add_argument("--out", required=True, help="the model file to write (.safetensors)")
    parser.add_argument(
        "--context", type=Path, default=None, help="the context model (default DIR/model_context1.pth)"
    )
    parser.add_argument(
        "--body", type=Path, default=None, help="the body model (default DIR/model_body1.pth)"
    )
    parser.add_argument(
        "--fusion", type=Path, default=None, help="the fusion model (default DIR/model_emotic1.pth)"
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help="the thresholds (default DIR/val_thresholds.npy when present; without them the model has none)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    """Import and print what was written."""
    from emoctx.errors import EmoctxError
    from emoctx.io import check_output_file
    from emoctx.models.baseline import find_files, import_baseline

    check_output_file(args.out)  # a folder, or a name ending in '/'
    args.out = Path(args.out)
    if args.out.suffix != ".safetensors":
        raise EmoctxError(f"{args.out}: the output must be a .safetensors file")
    overrides = {
        "context": args.context,
        "body": args.body,
        "fusion": args.fusion,
        "thresholds": args.thresholds,
    }
    files = find_files(args.dir, overrides)
    summary = import_baseline(files, args.out, overwrite=args.overwrite)
    streams = ", ".join(f"{name}: {arch}" for name, arch in summary["streams"].items())
    th = (
        "with the baseline's thresholds"
        if summary["thresholds"]
        else "without thresholds (see emoctx calibrate)"
    )
    print(f"{summary['out']}: the baseline's model ({streams}), {th}")
    return 0
