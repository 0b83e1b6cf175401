r"""Predict every person of a records file at scale: Lightning's Trainer.predict, DDP, one shard per process.

For very large collections of people whose boxes are known (canonical records: image path, box, image size per
person; see 'emoctx convert'). Lightning splits the records between the processes (--devices per node,
--num-nodes machines, --strategy ddp); each process streams its predictions into OUT's shard
<OUT stem>.shard-<rank>.parquet, and when all are done the first process merges them into OUT (Parquet, one
row per record in records order, every record exactly once) and removes the shards. Columns: record (row in
the records file), then those of 'emoctx predict' (source = the records' image path, frame = -1, person, box,
det_score = 1, p_<category>, categories, valence/arousal/dominance, model, error, width, height). A person whose
image cannot be read gets a row with 'error' set. The inputs are made as the model file's preprocessing says.
--engine onnxruntime/openvino runs the model's exported graphs on the CPU (--precision fp32, bf16 or int8),
checked against PyTorch fp32; the engine and its largest probability difference are in OUT's Parquet metadata.

Examples:
  emoctx predict-records --model runs/demo/train/model.safetensors \
      --records runs/demo/synth/annotations/test.parquet --root runs/demo/synth --out runs/demo/test_predictions.parquet
  emoctx predict-records --model model.safetensors --records people.parquet --root /data/images \
      --out predictions.parquet --device cuda --devices 4 --strategy ddp --batch-size 256 --workers 8
  emoctx predict-records ... --device cpu --devices 2 --strategy ddp
"""

from __future__ import annotations

import argparse

from emoctx.commands.options import add_device_option, add_engine_options, add_records_run_options

HELP = "predict every person of a records file with Lightning (DDP, one shard per process, merged Parquet)"


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict_records`` options to ``parser``."""
    parser.add_argument("--model", required=True, help="model file (.safetensors, or a training .ckpt)")
    parser.add_argument("--records", required=True, help="canonical records file (.parquet or .jsonl)")
    parser.add_argument(
        "--root", required=True, metavar="DIR", help="folder the records' image paths are relative to"
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="merged predictions (.parquet)")
    add_device_option(parser)
    parser.add_argument("--accelerator", default=None, help=argparse.SUPPRESS)  # deprecated: --device
    parser.add_argument(
        "--devices",
        type=_devices,
        default=1,
        help="how many devices (processes) per node, or 'auto' (default 1); --device says which kind",
    )
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    parser.add_argument("--num-nodes", type=int, default=1, help="machines taking part (default 1)")
    parser.add_argument(
        "--precision",
        default="32-true",
        help="--engine torch: Lightning's 32-true, 16-mixed or bf16-mixed (fp32 and bf16 also name them); the "
        "exported engines: fp32, bf16 or int8 (32-true is fp32 there); auto: bf16 where the hardware computes it "
        "natively, else fp32 (fp16 on a GPU without bf16). Default 32-true",
    )
    add_engine_options(
        parser,
        "torch",
        "the network in Lightning, on any accelerator; onnxruntime and openvino run on the CPU, one engine per "
        "process",
    )
    add_records_run_options(parser, "people per batch and process", "data-loading processes per process")
    parser.add_argument(
        "--max-side",
        type=int,
        default=None,
        metavar="PX",
        help="decode images with their longest side at most this many pixels (faster for large JPEGs; 0 = full "
        "size). Default: what the model was trained with",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the prediction; the first process prints where the merged table is."""
    from emoctx.errors import EmoctxError
    from emoctx.hardware import lightning_device
    from emoctx.inference.distributed import predict_records
    from emoctx.io import check_output_file

    check_output_file(args.out, [args.model, args.records])
    device, option = args.device, "--device"
    if args.accelerator is not None:  # the option's old name
        import logging

        logging.getLogger(__name__).warning(
            "--accelerator is deprecated: use --device (cpu, cuda, auto), the name every command takes"
        )
        device, option = args.accelerator, "--accelerator"
    accelerator, indices = lightning_device(device, option)
    if indices is not None and args.devices not in (1, len(indices)):
        raise EmoctxError(f"{option} {device} names one device; --devices {args.devices} asks for more")

    result = predict_records(
        args.model,
        args.records,
        args.root,
        args.out,
        accelerator=accelerator,
        devices=indices if indices is not None else args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        precision=args.precision,
        batch_size=args.batch_size,
        num_workers=args.workers,
        max_side="model" if args.max_side is None else (args.max_side or None),
        progress=not args.no_progress,
        engine=args.engine,
        calibration_records=args.calibration_records,
        calibration_root=args.calibration_root,
        engine_cache=args.engine_cache,
    )
    if result is not None:
        print(
            f"{result.rows} people predicted by {result.world_size} process(es) in {result.seconds:.1f} s "
            f"({result.persons_per_second:.1f} persons/s); {result.errors} error row(s) -> {result.out}"
        )
        if result.duplicates:
            print(f"  {result.duplicates} duplicate prediction(s) from sampler padding dropped")
    return 0
