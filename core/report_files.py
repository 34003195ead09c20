"""A report's files: its PDF (fpdf2) and its CSV.

The PDF is set in DejaVu Sans where the system has it (Debian's fonts-dejavu,
which Chromium brings), so labels, coil ids and user names in any script print
as typed; elsewhere in Helvetica, one of the PDF core fonts, with what it cannot
show replaced by "?". Times are shown on the plant's clock with the zone's name;
the CSV keeps UTC, as every export of the site does.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

if TYPE_CHECKING:
    from core.reports import Line, ReportContent

#: where Debian (fonts-dejavu-core) and most Linux systems keep DejaVu Sans
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
#: the PDF lists at most this many flagged frames and findings; the CSV has all
PDF_MAX_LINES = 1000
#: characters Helvetica (latin-1) lacks, as it can print them
PLAIN = str.maketrans({"–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "..."})
HEADINGS = FontFace(emphasis="BOLD", fill_color=(225, 230, 236))

#: the CSV's columns: one row per finding of a flagged frame (``finding``: its rank
#: in the frame; empty for a frame flagged whole); times in UTC, positions in metres
CSV_COLUMNS = [
    "inspection_id",
    "finding",
    "processed_at",
    "camera",
    "coil_id",
    "frame_index",
    "position_m",
    "across_m",
    "label",
    "score",
    "review_state",
    "review_label",
]
# A cell starting with one of these is a formula to a spreadsheet: such text cells
# get a leading apostrophe, as in the site's other CSV export.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def dejavu() -> tuple[Path, Path] | None:
    """DejaVu Sans and its bold face, where the system has both."""
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


class ReportPDF(FPDF):
    """A4 portrait, one font family, a footer with the report and page number."""

    def __init__(self, footer_text: str, unicode_font: bool = True) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = footer_text
        fonts = dejavu() if unicode_font else None
        if fonts is not None:
            self.add_font("DejaVu", "", str(fonts[0]))
            self.add_font("DejaVu", "B", str(fonts[1]))
            self.family_name, self.unicode_text = "DejaVu", True
        else:
            self.family_name, self.unicode_text = "Helvetica", False
        self.set_margins(12, 12, 12)
        self.set_auto_page_break(True, margin=16)

    def safe(self, value: Any) -> str:
        """``value`` as text this PDF's font can show."""
        text = "" if value is None else str(value)
        if self.unicode_text:
            return text
        return text.translate(PLAIN).encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family_name, size=8)
        self.set_text_color(100)
        self.cell(0, 6, self.safe(f"{self.footer_text} - page {self.page_no()}/{{nb}}"), align="C")
        self.set_text_color(0)

    def heading(self, text: str, size: float = 12) -> None:
        self.ln(3)
        self.set_font(self.family_name, "B", size)
        self.multi_cell(0, size * 0.5, self.safe(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)
        self.set_font(self.family_name, "", 9)

    def paragraph(self, text: str, size: float = 9, bold: bool = False) -> None:
        self.set_font(self.family_name, "B" if bold else "", size)
        self.multi_cell(0, size * 0.5, self.safe(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.family_name, "", 9)

    def grid(
        self,
        headings: Sequence[str],
        rows: Sequence[Sequence[Any]],
        widths: Sequence[float] | None = None,
        align: Sequence[str] | None = None,
        width: float | None = None,
    ) -> None:
        """A table with a heading row (repeated on each page it runs onto); none when
        ``headings`` is empty."""
        self.set_font(self.family_name, "", 8.5)
        with self.table(
            first_row_as_headings=bool(headings),
            col_widths=tuple(widths) if widths else None,
            text_align=tuple(align) if align else "LEFT",
            headings_style=HEADINGS,
            line_height=4.6,
            width=width,
            align="LEFT",
            padding=0.8,
        ) as table:
            if headings:
                heading = table.row()
                for text in headings:
                    heading.cell(self.safe(text))
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(self.safe(value))
        self.set_font(self.family_name, "", 9)


def when(value: datetime | str | None, zone: tzinfo) -> str:
    """A time on the plant's clock, with its zone's abbreviation."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def review_text(state: str, relabel: str | None) -> str:
    text = state.replace("_", " ")
    return f"{text}: {relabel}" if relabel and state == "relabeled" else text


def render_pdf(
    content: ReportContent, zone: tzinfo, *, compress: bool = True, unicode_font: bool = True
) -> bytes:
    """The report as a PDF. ``compress=False`` and ``unicode_font=False`` leave its
    text readable in the file's bytes (tests look for it there)."""
    made = "automatically" if content.made_by is None else f"by {content.made_by}"
    pdf = ReportPDF(f"{content.title} - line {content.line}", unicode_font)
    pdf.compress = compress
    pdf.set_title(pdf.safe(content.title))
    pdf.set_author("Steel inspection")
    pdf.set_creator("Steel inspection")
    pdf.set_creation_date(content.made_at)
    pdf.add_page()
    pdf.heading(content.title, size=16)
    pdf.paragraph(f"Line {content.line} - made {when(content.made_at, zone)} {made}")
    pdf.paragraph(
        f"Period: {when(content.period_start, zone)} to {when(content.period_end, zone)}"
        f" (plant time, {zone})"
    )
    if content.kind == "coil":
        coil_sections(pdf, content.summary)
    else:
        shift_sections(pdf, content.summary)
    review_section(pdf, content.summary["review"])
    lines_section(pdf, content, zone)
    return bytes(pdf.output())


def coil_sections(pdf: ReportPDF, summary: dict[str, Any]) -> None:
    verdict = str(summary["verdict"] or "none").upper()
    provisional = " (provisional: the coil has not ended)" if summary["provisional"] else ""
    pdf.heading("Verdict")
    pdf.paragraph(f"{verdict}{provisional}", size=14, bold=True)
    for reason in summary["reasons"]:
        pdf.paragraph(f"- {reason}")
    if not summary["reasons"]:
        pdf.paragraph("No coil rule holds this coil.")
    pdf.heading("Coil")
    rows: list[tuple[Any, ...]] = [
        ("Coil", summary["coil_id"]),
        ("State", summary["state"]),
        ("Frames", summary["frames"]),
        ("Flagged frames", summary["flagged"]),
        ("Findings listed", summary["findings"]),
        ("Length", f"{number(summary['length_m'])} m"),
    ]
    pdf.grid((), rows, widths=(1, 2), width=110)
    by_label_section(
        pdf, summary["by_label"], "Marks by label (after review; false alarms left out)"
    )


def shift_sections(pdf: ReportPDF, summary: dict[str, Any]) -> None:
    pdf.heading("Shift")
    complete = "yes" if summary["complete"] else "no: made before the shift ended"
    rows: list[tuple[Any, ...]] = [
        ("Shift (start, plant time)", summary["shift"]),
        ("Complete", complete),
        ("Frames inspected", summary["frames"]),
        ("Passed", summary["passed"]),
        ("Flagged", summary["flagged"]),
        ("Rejected", summary["rejected"]),
        ("Findings listed", summary["findings"]),
    ]
    pdf.grid((), rows, widths=(1, 1), width=120)
    by_label_section(pdf, summary["by_label"], "Flagged frames by label")
    pdf.heading("By camera")
    if summary["by_camera"]:
        rows = [
            (c["camera"], c["frames"], c["passed"], c["flagged"], c["rejected"])
            for c in summary["by_camera"]
        ]
        pdf.grid(
            ("Camera", "Frames", "Passed", "Flagged", "Rejected"),
            rows,
            widths=(3, 1, 1, 1, 1),
            align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        )
    else:
        pdf.paragraph("No frame was inspected in this shift.")
    pdf.heading("Coils")
    if summary["coils"]:
        rows = [
            (c["coil_id"], c["frames"], c["flagged"], coil_verdict(c)) for c in summary["coils"]
        ]
        pdf.grid(
            ("Coil", "Frames in the shift", "Flagged", "Verdict"),
            rows,
            widths=(3, 1.3, 1, 1.3),
            align=("LEFT", "RIGHT", "RIGHT", "LEFT"),
        )
    else:
        pdf.paragraph("No frame of this shift named a coil.")


def coil_verdict(coil: dict[str, Any]) -> str:
    if coil["verdict"]:
        return str(coil["verdict"])
    return "ended, not judged yet" if coil["ended"] else "open"


def by_label_section(pdf: ReportPDF, by_label: dict[str, int], title: str) -> None:
    pdf.heading(title)
    if by_label:
        pdf.grid(
            ("Label", "Count"),
            list(by_label.items()),
            widths=(3, 1),
            width=100,
            align=("LEFT", "RIGHT"),
        )
    else:
        pdf.paragraph("None.")


def review_section(pdf: ReportPDF, review: dict[str, int]) -> None:
    total = sum(review.values())
    done = total - review.get("pending", 0)
    pdf.heading("Review")
    if not total:
        pdf.paragraph("No flagged frame to review.")
        return
    pdf.paragraph(f"{done} of {total} flagged frames reviewed ({100 * done / total:.0f}%).")
    rows = [(state.replace("_", " "), count) for state, count in review.items()]
    pdf.grid(("Review state", "Frames"), rows, widths=(3, 1), width=100, align=("LEFT", "RIGHT"))


def lines_section(pdf: ReportPDF, content: ReportContent, zone: tzinfo) -> None:
    lines = content.lines
    pdf.heading("Flagged frames and findings")
    if not lines:
        pdf.paragraph("None.")
        return
    if len(lines) > PDF_MAX_LINES:
        pdf.paragraph(f"The first {PDF_MAX_LINES} of {len(lines)}; the CSV lists them all.")
    shown = lines[:PDF_MAX_LINES]
    if content.kind == "coil":
        headings = (
            "Along (m)",
            "Across (m)",
            "Frame",
            "Finding",
            "Camera",
            "Label",
            "Score",
            "Review",
        )
        rows = [
            (
                number(x.position_m),
                number(x.across_m),
                f"#{x.inspection_id}",
                finding(x),
                x.camera,
                x.label,
                number(x.score, 4),
                review_text(x.review_state, x.review_label),
            )
            for x in shown
        ]
        widths: tuple[float, ...] = (1, 1, 1, 1.3, 1.5, 1.8, 0.9, 2.2)
    else:
        headings = ("Inspected", "Camera", "Coil", "Along (m)", "Frame", "Label", "Score", "Review")
        rows = [
            (
                when(x.processed_at, zone),
                x.camera,
                x.coil_id or "-",
                number(x.position_m),
                f"#{x.inspection_id}",
                x.label,
                number(x.score, 4),
                review_text(x.review_state, x.review_label),
            )
            for x in shown
        ]
        widths = (3.1, 1.3, 1.2, 0.9, 0.9, 1.5, 0.9, 2.1)
    pdf.grid(headings, rows, widths=widths)


def finding(line: Line) -> str:
    return "whole frame" if line.finding is None else str(line.finding + 1)


# -- CSV --------------------------------------------------------------------------


def csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def render_csv(content: ReportContent) -> bytes:
    """One row per flagged frame's finding (CSV_COLUMNS), UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for x in content.lines:
        values = (
            x.inspection_id,
            x.finding,
            x.processed_at,
            x.camera,
            x.coil_id,
            x.frame_index,
            x.position_m,
            x.across_m,
            x.label,
            x.score,
            x.review_state,
            x.review_label,
        )
        writer.writerow([csv_cell(value) for value in values])
    return buffer.getvalue().encode("utf-8")
