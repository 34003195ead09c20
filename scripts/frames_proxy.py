"""The frames selection rule's score (docs/experiments.md, *Frames*): a design of the
good-surface memory on one half of the magnetic-tile groups, at one K.

    python scripts/frames_proxy.py --stages 1,2 --half even      # choosing
    python scripts/frames_proxy.py --stages 1,2 --half odd       # reporting, after
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from model import load_embedder
from model.evaluate_frames import Sample, evaluate_frames
from model.frames import load_frame_inspector

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic-tile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument(
        "--frame-checkpoint",
        type=Path,
        default=None,
        help="the memory's features (default: as served)",
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--stages", default="1,2", help="network stages, finest 0")
    parser.add_argument("--half", choices=["even", "odd"], default="even")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument(
        "--margin", type=float, default=None, help="calibration margin (default: the model's)"
    )
    args = parser.parse_args()
    parity = 0 if args.half == "even" else 1

    def in_half(sample: Sample) -> bool:
        return sample.group.isdigit() and int(sample.group) % 2 == parity

    started = time.monotonic()
    embedder = load_embedder(args.checkpoint, device="cpu")
    result = evaluate_frames(
        embedder,
        args.data,
        "free",
        [args.k],
        draws=args.draws,
        scale=args.scale,
        stages=tuple(int(s) for s in args.stages.split(",")),
        keep=in_half,
        margin=args.margin,
        feature_model=load_frame_inspector(
            args.frame_checkpoint, "cpu", fallback=embedder
        ).embedder,
    )
    row = result["by_good_references"][str(args.k)]
    whole = result["rules"]["whole-image"]["by_good_references"][str(args.k)]
    print(
        f"{args.half} half, K={args.k}: image AUROC {row['image_auroc']:.3f}, located "
        f"{row['located']:.3f}, rule score {row['image_auroc'] + row['located']:.3f}; "
        f"false alarms {row['false_alarm_rate']:.3f}, recall {row['recall']:.3f}, pixel "
        f"AUROC {row['pixel_auroc']:.3f}, naming {row['naming_accuracy']:.3f}; whole-image "
        f"AUROC {whole['image_auroc']:.3f} ({time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
