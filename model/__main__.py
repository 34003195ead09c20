"""Command line: ``python -m model train | evaluate | compare``."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.config import RECIPES, recipe_name, recipe_names


def parse_classes(text: str) -> list[str]:
    classes = [c.strip() for c in text.split(",") if c.strip()]
    if len(classes) < 2:
        raise argparse.ArgumentTypeError("give at least two comma-separated classes")
    return classes


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a recipe",
        description="Train a model from a recipe: a TOML file holding every value it was "
        f"trained with. Recipes in {RECIPES.relative_to(RECIPES.parent.parent)}/: "
        f"{', '.join(recipe_names())}. The flags below override the recipe's values; "
        "paths are relative to the directory you run from (the repository root).",
    )
    p.add_argument(
        "--recipe",
        required=True,
        metavar="NAME|PATH",
        help="a recipe's name (listed above) or a .toml file",
    )
    p.add_argument("--data", type=Path, help="folder of class sub-folders (NEU-CLS)")
    p.add_argument(
        "--train-classes", type=parse_classes, metavar="A,B,C", help="classes to train on"
    )
    p.add_argument("--out", type=Path, help="output folder (checkpoint, metadata, loss curve)")
    p.add_argument(
        "--teacher",
        metavar="CHECKPOINT|RECIPE",
        help="distill: the teacher's checkpoint, or a recipe to train first into OUT/teacher "
        "(with this command's data, classes, seed and device)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="learning rate (the peak, with onecycle)")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other recipe value, KEY dotted into its tables: views.shading=1.0, "
        "network.fine_stage1=false, center=false; repeatable",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="one epoch of two batches into runs/dry-run/RECIPE, to check the set-up",
    )


def recipe_values(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe with this command's overrides: ``--set`` first, then the flags."""
    from model.config import apply_overrides, load_recipe

    recipe = apply_overrides(load_recipe(args.recipe), args.set)
    flags = {
        "data": args.data,
        "train_classes": args.train_classes,
        "out": args.out,
        "epochs": args.epochs,
        "lr": args.lr,
        "seed": args.seed,
        "device": args.device,
    }
    given = {k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if v is not None}
    return {**recipe, **given}


def train_recipe(args: argparse.Namespace, name: str) -> Any:
    """Train one recipe as ``args`` asks; a ``--teacher`` recipe is trained first."""
    from model.config import DistillConfig, config_from_recipe
    from model.train import train

    config = config_from_recipe(recipe_values(args), name)
    if args.dry_run:
        out = args.out or Path("runs") / "dry-run" / name
        config = replace(config, epochs=1, max_batches=2, out=out)
    if args.teacher:
        if not isinstance(config.objective, DistillConfig):
            raise ValueError(f"--teacher is for distill recipes; {name} is {config.objective.name}")
        teacher = Path(args.teacher)
        if teacher.suffix != ".pt":
            # a recipe: train it first, on this command's data, classes and seed
            first = argparse.Namespace(
                **{**vars(args), "recipe": args.teacher, "teacher": None, "set": []},
            )
            first.out, first.epochs, first.lr = config.out / "teacher", None, None
            teacher = train_recipe(first, recipe_name(args.teacher)).checkpoint
        config = replace(config, objective=replace(config.objective, teacher=teacher))
    config = replace(config, command="python -m model " + shlex.join(sys.argv[1:]))
    result = train(config)
    metrics = result.meta["metrics"]
    print(f"{name}: checkpoint {result.checkpoint}, threshold {result.meta['threshold']:.4f}")
    print(
        f"validation pair accuracy {metrics['val_pair_accuracy']:.3f}, "
        f"ROC AUC {metrics['val_roc_auc']:.3f}"
    )
    return result


def run_train(args: argparse.Namespace) -> int:
    train_recipe(args, recipe_name(args.recipe))
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
        help="a supervised CNN checkpoint (the conventional-cnn recipe): its held-out "
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


def add_evaluate_frames_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate-frames",
        help="find defects on frames with K good references: detection, location, naming",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="one folder per class, one of them good surface; optional masks/<class>/ "
        "and groups.csv (or tile_groups.csv) with columns file,group",
    )
    p.add_argument("--good-class", required=True, help="the folder of good surface")
    p.add_argument(
        "--good-references",
        type=lambda text: [int(k) for k in text.split(",")],
        default=[1, 5, 20],
        help="numbers of good references to draw, comma-separated (default 1,5,20)",
    )
    p.add_argument("--json", type=Path, required=True, help="where to write the results")
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="the naming model (default: the shipped one)"
    )
    p.add_argument(
        "--frame-checkpoint",
        type=Path,
        default=None,
        help="the model whose features build the memory (default: the shipped frames.pt "
        "where present, else --checkpoint)",
    )
    p.add_argument("--draws", type=int, default=5, help="random draws per K (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="model pixels per image pixel (default 1.0: the scale the model learned)",
    )
    p.add_argument("--device", default="cpu")


def run_evaluate_frames(args: argparse.Namespace) -> int:
    from model.embedder import load_embedder
    from model.evaluate_frames import evaluate_frames, markdown, write_result

    if not args.data.is_dir():
        raise FileNotFoundError(f"not a folder: {args.data}")
    from model.frames import load_frame_inspector

    embedder = load_embedder(args.checkpoint, device=args.device)
    features = load_frame_inspector(args.frame_checkpoint, args.device, fallback=embedder)
    result = evaluate_frames(
        embedder,
        args.data,
        args.good_class,
        args.good_references,
        draws=args.draws,
        seed=args.seed,
        scale=args.scale,
        feature_model=features.embedder,
    )
    write_result(result, args.json)
    print(markdown(result))
    print(f"written to {args.json}")
    return 0


def add_train_frames_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-frames",
        help="train the local features of good-surface memories (model/recipes/frames/)",
    )
    p.add_argument("--recipe", default="surface", help="a recipe of model/recipes/frames/")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    p.add_argument("--seed", type=int, default=None, help="overrides the recipe's seed")


def run_train_frames(args: argparse.Namespace) -> int:
    from model.surface import train_frames

    path = train_frames(args.recipe, args.out, args.seed)
    print(f"written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_compare_parser(subparsers)
    add_evaluate_frames_parser(subparsers)
    add_train_frames_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {
            "train": run_train,
            "evaluate": run_evaluate,
            "compare": run_compare,
            "evaluate-frames": run_evaluate_frames,
            "train-frames": run_train_frames,
        }
        return commands[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
