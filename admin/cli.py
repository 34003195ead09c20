"""Flask CLI commands: ``create-user``, ``add-reference``, ``seed-references``,
``create-token`` and ``set-camera``."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.auth import create_user
from admin.labels import near_duplicates
from admin.report_cli import make_report_command
from core.blobs import BlobStore
from core.camera_positions import check_camera_across, check_frame_length, set_camera_position
from core.db import session_scope
from core.images import ImageRejected
from core.references import add_reference, seed_from_folder
from core.settings import get_settings
from core.surface_memories import DEFAULT_SCALE
from core.tables import REFERENCE_KINDS, ROLES, TOKEN_SCOPES, Camera, Label
from core.thresholds import MAX_SCALE, MIN_SCALE, check_scale, set_camera_scale


@click.command("create-user")
@with_appcontext
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="supervisor", show_default=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="prompted for when omitted",
)
def create_user_command(name: str, role: str, password: str) -> None:
    """Add a supervisor or admin who can log in to the site."""
    try:
        with session_scope(current_app.config["DATABASE_URL"]) as session:
            create_user(session, name, password, role)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} {name!r}")


@click.command("add-reference")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", required=True, help="the defect class, such as 'scratches'")
@click.option(
    "--kind",
    type=click.Choice(REFERENCE_KINDS),
    default="defect",
    show_default=True,
    help="defect: matching images are flagged; ok: matching images pass",
)
@click.option(
    "--camera",
    default=None,
    help="with --kind ok: FILE is a good frame of this camera; its good frames build a "
    "memory of good surface, and its frames are then judged by findings",
)
@click.option(
    "--new-label",
    is_flag=True,
    help="LABEL is a new label although it looks like one that exists ('Scratch' beside "
    "'scratches'); without it such a LABEL is refused",
)
@click.option("--added-by", default="cli", show_default=True)
def add_reference_command(
    file: Path, label: str, kind: str, camera: str | None, new_label: bool, added_by: str
) -> None:
    """Register FILE as a one-shot reference image; workers pick it up without restart.
    A LABEL not in the list of labels is added to it."""
    settings = get_settings()
    label = label.strip()
    try:
        with session_scope(current_app.config["DATABASE_URL"]) as session:
            created = check_new_label(session, label, new_label)
            reference = add_reference(
                session,
                BlobStore(current_app.config["BLOB_DIR"]),
                file.read_bytes(),
                label,
                kind,
                added_by,
                settings.max_image_bytes,
                settings.max_image_pixels,
                camera=camera,
            )
            ref_id = reference.id
    except (ValueError, ImageRejected) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    scope = f" for camera {camera}" if camera else ""
    if created:
        click.echo(f"created the label {label!r}")
    click.echo(f"added reference {ref_id}: {label} ({kind}){scope} from {file}")


def check_new_label(session: Session, label: str, meant: bool) -> bool:
    """Whether ``label`` is new to the list of labels; a ``ValueError`` when it looks
    like labels that exist and ``meant`` (``--new-label``) was not given."""
    if not label or session.get(Label, label) is not None:
        return False
    similar = near_duplicates(label, session.scalars(select(Label.name)))
    if similar and not meant:
        names = ", ".join(repr(name) for name in similar)
        raise ValueError(
            f"{label!r} looks like the existing label(s) {names}: give --label "
            f"{similar[0]!r}, or add --new-label to create {label!r}"
        )
    return True


@click.command("seed-references")
@with_appcontext
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def seed_references_command(folder: Path) -> None:
    """Register the first image of each class sub-folder of FOLDER as a defect reference,
    for labels the library does not have yet (safe to run again)."""
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        added = seed_from_folder(session, BlobStore(current_app.config["BLOB_DIR"]), folder, "seed")
    for label, path in added:
        click.echo(f"added reference: {label} <- {path}")
    if not added:
        click.echo("every label in that folder has a reference already; nothing added")


@click.command("create-token")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(TOKEN_SCOPES),
    multiple=True,
    required=True,
    help="what the token may do (repeat): submit jobs, read inspections, review, metrics",
)
@with_appcontext
def create_token_command(name: str, scopes: tuple[str, ...]) -> None:
    """Create an API token for the plant system NAME; printed once, stored as a hash."""
    from admin.tokens import new_api_token

    try:
        with session_scope(current_app.config["DATABASE_URL"]) as session:
            token = new_api_token(session, name, "cli", scopes)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)


@click.command("set-camera")
@with_appcontext
@click.argument("name")
@click.option(
    "--scale",
    type=float,
    help=f"model pixels per frame pixel ({MIN_SCALE:g} to {MAX_SCALE:g}; 1: frames as they "
    "are; 0.5: read at half their size)",
)
@click.option(
    "--frame-length-m",
    type=float,
    help="metres of strip one frame covers: a job's frame_index times it is its position",
)
@click.option(
    "--across-m",
    type=float,
    help="the camera's place across the strip, metres from its reference edge",
)
@click.option("--by", "user", default="cli", show_default=True, help="recorded as who set it")
def set_camera_command(
    name: str,
    scale: float | None,
    frame_length_m: float | None,
    across_m: float | None,
    user: str,
) -> None:
    """Create or update camera NAME: the scale the model reads its frames at (a new
    scale rebuilds the camera's good-surface memory on its next frame), and where it
    sits on the strip (traceability)."""
    if scale is None and frame_length_m is None and across_m is None:
        raise click.UsageError("give --scale, --frame-length-m or --across-m")
    try:  # nothing is set when one value is wrong
        if scale is not None:
            check_scale(scale)
        check_frame_length(frame_length_m)
        check_camera_across(across_m)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if frame_length_m is not None or across_m is not None:
        set_position(name, frame_length_m, across_m, user)
    if scale is not None:
        set_scale(name, scale, user)


def set_position(
    name: str, frame_length_m: float | None, across_m: float | None, user: str
) -> None:
    """The camera's traceability settings; the one not given stays as it was."""
    try:
        with session_scope(current_app.config["DATABASE_URL"]) as session:
            row = session.get(Camera, name)
            length, across = frame_length_m, across_m
            if row is not None:
                length = row.frame_length_m if length is None else length
                across = row.across_m if across is None else across
            set_camera_position(session, name, length, across, user)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    shown = [f"frame length {length:g} m" if length is not None else "no frame length"]
    shown.append(f"across {across:g} m" if across is not None else "no place across")
    click.echo(f"camera {name}: {', '.join(shown)}")


def set_scale(name: str, scale: float, user: str) -> None:
    try:
        with session_scope(current_app.config["DATABASE_URL"]) as session:
            old = set_camera_scale(session, name, scale, user)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    name = name.strip()
    before = DEFAULT_SCALE if old is None else old
    if before == scale:
        click.echo(f"camera {name}: scale {scale:g}, as before; its memory stands")
    else:
        click.echo(
            f"camera {name}: scale {scale:g} (was {before:g}); its good-surface memory is "
            "rebuilt on its next frame"
        )


def init_app(app: Flask) -> None:
    app.cli.add_command(create_token_command)
    app.cli.add_command(create_user_command)
    app.cli.add_command(add_reference_command)
    app.cli.add_command(seed_references_command)
    app.cli.add_command(set_camera_command)
    app.cli.add_command(make_report_command)
