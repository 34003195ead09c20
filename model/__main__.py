"""Command line: ``python -m model train ...``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from model.networks import ARCHITECTURES

NEU_TRAIN_CLASSES = "inclusion,patches,rolled-in_scale"


def parse_classes(text: str) -> list[str]:
    classes = [c.strip() for c in text.split(",") if c.strip()]
    if len(classes) < 2:
        raise argparse.ArgumentTypeError("give at least two comma-separated classes")
    return classes


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a Siamese network on pairs")
    p.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    p.add_argument(
        "--train-classes",
        type=parse_classes,
        default=parse_classes(NEU_TRAIN_CLASSES),
        help=f"comma-separated classes to train on (default {NEU_TRAIN_CLASSES})",
    )
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="deshpande2020")
    p.add_argument("--embedding-dim", type=int, default=None)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.0005)
    p.add_argument("--margin", type=float, default=2.0, help="contrastive margin")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keep",
        choices=["last", "best"],
        default="last",
        help="keep the last epoch or the one with the lowest validation loss",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default runs/<arch>-lr<lr>-seed<seed>)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="one epoch of two batches, to check that everything runs",
    )


def run_train(args: argparse.Namespace) -> int:
    from model.train import TrainConfig, train

    out = args.out or Path("runs") / f"{args.arch}-lr{args.lr:g}-seed{args.seed}"
    config = TrainConfig(
        data=args.data,
        train_classes=args.train_classes,
        out=out,
        arch=args.arch,
        embedding_dim=args.embedding_dim,
        epochs=1 if args.dry_run else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        margin=args.margin,
        val_fraction=args.val_fraction,
        seed=args.seed,
        keep=args.keep,
        device=args.device,
        command="python -m model " + shlex.join(sys.argv[1:]),
        max_batches=2 if args.dry_run else None,
    )
    result = train(config)
    metrics = result.meta["metrics"]
    print(f"checkpoint: {result.checkpoint}")
    print(f"threshold:  {result.meta['threshold']:.4f}")
    print(
        f"validation pair accuracy {metrics['val_pair_accuracy']:.3f}, "
        f"ROC AUC {metrics['val_roc_auc']:.3f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"train": run_train}[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
