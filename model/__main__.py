"""Command line: ``python -m model train ...``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from model.networks import ARCHITECTURES, VIEWS
from model.synthetic import MODELS

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
    p.add_argument(
        "--objective",
        choices=["pairs", "views", "classify", "distill"],
        default="pairs",
        help="pairs: the paper's contrastive pairs; views: two augmented views per "
        "image, instance + class contrast; classify: cross-entropy (baseline CNN); "
        "distill: learn a --teacher checkpoint's multi-view codes in one pass",
    )
    p.add_argument("--embedding-dim", type=int, default=None)
    p.add_argument(
        "--width",
        type=int,
        default=None,
        help="compact_texture, texture_net: channels of the first stage (default 32)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        choices=[100, 200],
        default=None,
        help="texture_net: input side in pixels; 200 sees NEU images at full resolution "
        "(default 100)",
    )
    p.add_argument(
        "--pool-max",
        action="store_true",
        help="texture_net: pool every feature map's maximum as well as its mean and spread "
        "(sparse marks: pits, inclusions)",
    )
    p.add_argument(
        "--fine-stage1",
        action="store_true",
        help="texture_net: run the first stage at twice the resolution (its max pool moved "
        "behind it, another before the last stage), as the five-view model's quadrant views "
        "see an image; about 1.5x the multiply-adds",
    )
    p.add_argument(
        "--quadrant-codes",
        action="store_true",
        help="texture_net: pool the feature maps over the whole image and over each quadrant, "
        "and average the five codes, as the five-view model averages its views (one pass)",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        action="append",
        default=[],
        help="distill: checkpoint of the trained teacher; repeat it for an ensemble "
        "(the student learns the mean of their codes)",
    )
    p.add_argument(
        "--teacher-views",
        choices=VIEWS,
        default="whole+quadrants",
        help="distill: how the teacher looks at each image (default whole+quadrants)",
    )
    p.add_argument(
        "--init-from-teacher",
        action="store_true",
        help="distill: start the student from the teacher's weights (same architecture)",
    )
    p.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        help="distill: fraction of training images blended with another image of the batch "
        "(weight uniform in 0-1) before teacher and student see them (default 0)",
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32, help="pairs or images per batch")
    p.add_argument("--lr", type=float, default=0.0005)
    p.add_argument("--weight-decay", type=float, default=0.0, help="> 0 uses AdamW")
    p.add_argument("--schedule", choices=["constant", "onecycle"], default="constant")
    p.add_argument("--margin", type=float, default=2.0, help="pairs: contrastive margin")
    p.add_argument("--per-class", type=int, default=32, help="views: images per class per batch")
    p.add_argument("--temperature", type=float, default=0.1, help="views: softmax temperature")
    p.add_argument(
        "--class-weight",
        type=float,
        default=1.0,
        help="views: weight of the supervised (same class) term",
    )
    p.add_argument(
        "--texture-weight",
        type=float,
        default=0.0,
        help="views: weight of an extra term, predicting each view's local binary pattern "
        "histograms from its embedding (0: off)",
    )
    p.add_argument(
        "--synthetic-classes",
        type=int,
        default=0,
        help="views, distill: procedurally generated texture classes added to every batch, "
        "new ones each batch (model/synthetic.py; 0: off)",
    )
    p.add_argument(
        "--synthetic-per-class",
        type=int,
        default=8,
        help="views, distill: images of each synthetic class in a batch (default 8)",
    )
    p.add_argument(
        "--synthetic-model",
        choices=MODELS,
        default="basic",
        help="views, distill: the texture model of the synthetic classes: basic (fields, "
        "blobs, spots, streaks) or rich (adds crack networks, clustered marks, shading)",
    )
    p.add_argument(
        "--synthetic-backgrounds",
        type=float,
        default=0.0,
        help="views, distill: the share of synthetic classes laid over real training images, "
        "so that a class is a texture on any steel surface (0-1; default 0)",
    )
    p.add_argument(
        "--min-crop",
        type=float,
        default=0.35,
        help="views: smallest random crop, as a fraction of the image area",
    )
    p.add_argument(
        "--shading",
        type=float,
        default=0.0,
        help="views, distill: light each training view unevenly, by a smooth random field "
        "of up to exp(+-S) (default 0: evenly lit views)",
    )
    p.add_argument(
        "--blur",
        type=float,
        default=0.0,
        help="views, distill: blur each training view by a Gaussian of random sigma up to "
        "B pixels of the view, as if out of focus (default 0: sharp views)",
    )
    p.add_argument(
        "--local-views",
        type=int,
        default=0,
        help="views: N small views of each training image besides the two large ones "
        "(crops of 6-25%% of its area at half the input size; multi-crop; default 0)",
    )
    p.add_argument(
        "--views",
        choices=VIEWS,
        default="whole",
        help="how an image is embedded at inference: whole (one pass), "
        "whole+quadrants (texture_net: the whole image and its four quadrants at "
        "full resolution, averaged; five passes) or whole+mid4+quadrants (also its "
        "four corners of 140x140, resized; nine passes)",
    )
    p.add_argument(
        "--center",
        action="store_true",
        help="after training, subtract the training images' mean embedding from every "
        "embedding and renormalise (networks with unit embeddings; stored in the checkpoint)",
    )
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
        objective=args.objective,
        embedding_dim=args.embedding_dim,
        width=args.width,
        input_size=args.input_size,
        pool_max=args.pool_max,
        fine_stage1=args.fine_stage1,
        quadrant_codes=args.quadrant_codes,
        teacher=args.teacher,
        teacher_views=args.teacher_views,
        init_from_teacher=args.init_from_teacher,
        mixup=args.mixup,
        epochs=1 if args.dry_run else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        margin=args.margin,
        per_class=args.per_class,
        temperature=args.temperature,
        class_weight=args.class_weight,
        texture_weight=args.texture_weight,
        min_crop=args.min_crop,
        shading=args.shading,
        blur=args.blur,
        local_views=args.local_views,
        synthetic_classes=args.synthetic_classes,
        synthetic_per_class=args.synthetic_per_class,
        synthetic_model=args.synthetic_model,
        synthetic_backgrounds=args.synthetic_backgrounds,
        views=args.views,
        center=args.center,
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


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="N-way one-shot episodes and pair verification, with 95%% intervals"
    )
    p.add_argument("--data", type=Path, required=True, help="folder of class sub-folders")
    p.add_argument(
        "--classes",
        type=parse_classes,
        required=True,
        help="comma-separated classes to evaluate on (N-way)",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a Siamese checkpoint; repeat for several",
    )
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=["pixels", "lbp"],
        help="a training-free baseline: raw pixels or multi-scale LBP; repeatable",
    )
    p.add_argument(
        "--classifier",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a supervised CNN checkpoint (--objective classify): its held-out "
        "accuracy is reported beside, marked as not one-shot",
    )
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--queries", type=int, default=5, help="queries per class per episode")
    p.add_argument(
        "--shots",
        type=int,
        default=1,
        help="supports (references) per class in each episode; a query takes the class of "
        "the nearest of them, as the service does (default 1: one-shot)",
    )
    p.add_argument("--pairs", type=int, default=900)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--out", type=Path, default=None, help="write results.json, results.md (and figures) here"
    )
    p.add_argument(
        "--figures",
        action="store_true",
        help="also save distance histograms and confusion matrices (PNG)",
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from model.report import run_evaluation, write_report

    if not (args.checkpoint or args.baseline or args.classifier):
        raise ValueError("give at least one --checkpoint, --baseline or --classifier")
    results, supervised = run_evaluation(
        args.data,
        args.classes,
        args.checkpoint,
        args.baseline,
        args.classifier,
        args.episodes,
        args.queries,
        args.pairs,
        args.seed,
        args.device,
        args.shots,
    )
    protocol = {
        "episodes": args.episodes,
        "shots": args.shots,
        "queries_per_class": args.queries,
        "pairs": args.pairs,
        "seed": args.seed,
        "command": "python -m model " + shlex.join(sys.argv[1:]),
    }
    if args.out:
        table = write_report(
            args.out, args.data, args.classes, results, supervised, protocol, args.figures
        )
        print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    else:
        from model.report import markdown_table

        table = markdown_table(args.classes, results, supervised)
    print(table)
    return 0


def add_compare_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="dissimilarity of two images (the original tool)")
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument(
        "--references",
        type=Path,
        default=None,
        help="folder of class sub-folders of reference images: also print each "
        "image's nearest reference",
    )
    p.add_argument("--device", default="cpu")


def run_compare(args: argparse.Namespace) -> int:
    from PIL import Image

    from model.compare import ReferenceLibrary, compare_images
    from model.embedder import load_embedder

    embedder = load_embedder(args.checkpoint, device=args.device)
    images = []
    for path in (args.first, args.second):
        try:
            with Image.open(path) as image:
                image.load()
                images.append(image.copy())
        except OSError as exc:
            raise ValueError(f"{path}: not a readable image ({exc})") from None
    library = ReferenceLibrary.from_folder(args.references, embedder) if args.references else None
    result = compare_images(embedder, images[0], images[1], library)
    verdict = "same class" if result.same_class else "different classes"
    print(f"model:         {embedder.version}")
    print(f"dissimilarity: {result.dissimilarity:.4f}")
    print(f"threshold:     {result.threshold:.4f} -> {verdict}")
    for path, nearest in zip((args.first, args.second), result.nearest, strict=True):
        if nearest is not None:
            print(
                f"{path}: nearest reference {nearest.label} ({nearest.name}, "
                f"distance {nearest.distance:.4f})"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_compare_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {"train": run_train, "evaluate": run_evaluate, "compare": run_compare}
        return commands[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
