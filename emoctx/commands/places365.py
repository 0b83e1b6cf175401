"""Convert a CSAIL Places365 checkpoint (e.g. resnet18_places365.pth.tar) into a safetensors state dict.

The result is what a scene stream loads with 'pretrained: PATH.safetensors'. Every key and shape is checked
against the timm architecture given by --arch; the 365-way classifier is dropped unless --keep-fc.

The file is read with torch.load(weights_only=True) (also with encoding=latin1 for Python 2 pickles). Only if that
fails and --trust-pickle is given is it unpickled fully, which can run code stored in the file: use it only for
files from a source you trust.

Example:
  emoctx places365 resnet18_places365.pth.tar --arch resnet18 --out weights/resnet18_places365.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "convert a Places365 checkpoint (.pth.tar) into a safetensors state dict for the scene stream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Source file, architecture, output and options."""
    parser.add_argument("src", type=Path, help="the CSAIL checkpoint, e.g. resnet18_places365.pth.tar")
    parser.add_argument(
        "--arch",
        default="resnet18",
        help="timm architecture the checkpoint was trained with (default: resnet18)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output .safetensors file (default: next to SRC, named <arch>_places365.safetensors)",
    )
    parser.add_argument(
        "--keep-fc", action="store_true", help="keep the 365-way classifier (dropped by default)"
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="if safe loading fails, unpickle the file fully (can run code from it: trusted sources only)",
    )


def run(args: argparse.Namespace) -> int:
    """Convert and print a one-line summary."""
    from emoctx.models.places365 import convert_places365

    out = args.out if args.out is not None else args.src.with_name(f"{args.arch}_places365.safetensors")
    if out.resolve() == args.src.resolve():
        from emoctx.errors import EmoctxError

        raise EmoctxError(f"{out}: the output would overwrite the source checkpoint; pass another --out")
    summary = convert_places365(
        args.src, out, args.arch, keep_fc=args.keep_fc, trust_pickle=args.trust_pickle
    )
    if summary["loaded_with"] == "full_unpickle":
        print(f"note: {args.src} could not be read safely and was unpickled fully (--trust-pickle)")
    dropped = f", dropped {len(summary['dropped'])} classifier tensors" if summary["dropped"] else ""
    filled = f", filled {len(summary['filled'])} BatchNorm counters" if summary["filled"] else ""
    print(f"{summary['out']}: {summary['tensors']} tensors for timm '{summary['arch']}'{dropped}{filled}")
    return 0
