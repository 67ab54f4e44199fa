"""X/Y grids, as A1111's "X/Y/Z plot" script makes them: one or two parameters varied over a few
values, one job per cell, and the results as one contact sheet with the values on its axes.

Axes are written ``steps=10,20,30`` (values separated by commas, quoted where a value holds
one). ``sr=red,blue,green`` is A1111's "Prompt S/R": the first value is searched for in the
prompt (and negative prompt) and each value in turn replaces it. Plain PIL, no torch: the CLI
and the app compose the sheet from the saved images.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tui.engine.request import GenerationRequest, InvalidRequest, validate_request
from tui.store.history import HistoryEntry, utc_now

MAX_CELLS = 100
# What an axis may be called, A1111's names among them, and the request field it varies.
AXIS_NAMES = {"seed": "seed", "steps": "steps", "guidance": "guidance", "cfg": "guidance", "cfg scale": "guidance",
              "scheduler": "scheduler", "sampler": "scheduler", "sr": "sr", "prompt s/r": "sr"}
LABELS = {"seed": "seed", "steps": "steps", "guidance": "CFG", "scheduler": "scheduler", "sr": "prompt"}
GRID_KEY = "sdtui-grid"  # the PNG text chunk with the axes and the cells' files


class GridError(ValueError):
    """Axes that cannot make a grid; the message is one sentence naming the axis."""


@dataclass(frozen=True)
class Axis:
    field: str  # seed | steps | guidance | scheduler | sr
    values: tuple[str, ...]

    def label(self, value: str) -> str:
        return f"{LABELS[self.field]}: {value}"

    def describe(self) -> str:
        return f"{self.field}={','.join(self.values)}"


def parse_axis(text: str) -> Axis:
    name, sep, values = text.partition("=")
    field = AXIS_NAMES.get(name.strip().casefold())
    if not sep or field is None:
        raise GridError(f"grid: {text!r} is not an axis; write NAME=V1,V2 with NAME one of seed, steps, guidance, "
                        "scheduler or sr (search and replace in the prompt)")
    parsed = tuple(v.strip() for v in next(csv.reader([values], skipinitialspace=True), []) if v.strip())
    if len(parsed) < (2 if field == "sr" else 1):
        needs, example = ("a word to find and what replaces it", "red,blue") if field == "sr" else ("a value", "V1,V2")
        raise GridError(f"grid: {name.strip()} needs {needs}; write {name.strip()}={example}")
    return Axis(field, parsed)


def parse_axes(texts: list[str]) -> list[Axis]:
    if not 1 <= len(texts) <= 2:
        raise GridError(f"grid: {len(texts)} axes; give one or two (X, then Y)")
    axes = [parse_axis(text) for text in texts]
    if len(axes) == 2 and axes[0].field == axes[1].field:
        raise GridError(f"grid: both axes vary {axes[0].field}; vary two different things")
    cells = len(axes[0].values) * (len(axes[1].values) if len(axes) == 2 else 1)
    if cells > MAX_CELLS:
        raise GridError(f"grid: {cells} cells is too many; the limit is {MAX_CELLS}")
    return axes


def grid_cells(axes_text: str, base: GenerationRequest) -> tuple[list[Axis], list[GenerationRequest]]:
    """The axes written on one line (``steps=10,20; guidance=5,7``) and the cells they make of ``base``."""
    axes = parse_axes([part for part in axes_text.split(";") if part.strip()])
    return axes, grid_requests(base, axes)


def _apply(request: GenerationRequest, axis: Axis, value: str) -> GenerationRequest:
    if axis.field == "sr":
        find = axis.values[0]
        return replace(request, prompt=request.prompt.replace(find, value),
                       negative_prompt=request.negative_prompt.replace(find, value))
    try:
        checked = validate_request({**request.to_dict(), axis.field: value})
    except InvalidRequest as error:
        raise GridError(f"grid: {axis.field} value {value!r}: {error.problems[0].message}") from None
    return replace(request, **{axis.field: getattr(checked, axis.field)})


def grid_requests(base: GenerationRequest, axes: list[Axis]) -> list[GenerationRequest]:
    """One request per cell, row by row (Y outer, X inner), each making one image. A random seed
    is drawn once, so the cells differ only by their axes."""
    for axis in axes:
        if axis.field == "sr" and axis.values[0] not in base.prompt + base.negative_prompt:
            raise GridError(f"grid: sr looks for {axis.values[0]!r}, which is not in the prompt")
    base = replace(base.with_seed(), count=1, template="")
    rows = axes[1].values if len(axes) == 2 else ("",)
    cells = []
    for row in rows:
        across = _apply(base, axes[1], row) if len(axes) == 2 else base
        cells += [_apply(across, axes[0], value) for value in axes[0].values]
    return cells


def compose(images: list, axes: list[Axis]):
    """The contact sheet: the cells (None for one that failed, drawn grey) at the first image's
    size, X values over the columns and Y values beside the rows."""
    from PIL import Image, ImageDraw, ImageFont

    present = [image for image in images if image is not None]
    if not present:
        raise GridError("grid: no cell made an image")
    width, height = present[0].size
    columns = len(axes[0].values)
    rows = len(axes[1].values) if len(axes) == 2 else 1
    font = ImageFont.load_default(size=max(12, width // 10))  # legible even in half blocks, a cell a row
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    pad = max(6, width // 40)
    top = max(text_size(axes[0].label(v))[1] for v in axes[0].values) + 2 * pad
    left = (max(text_size(axes[1].label(v))[0] for v in axes[1].values) + 2 * pad) if len(axes) == 2 else 0
    sheet = Image.new("RGB", (left + columns * width, top + rows * height), "white")
    draw = ImageDraw.Draw(sheet)
    for column, value in enumerate(axes[0].values):
        label = axes[0].label(value)
        x = left + column * width + (width - text_size(label)[0]) // 2
        draw.text((x, pad), label, fill="black", font=font)
    if len(axes) == 2:
        for row, value in enumerate(axes[1].values):
            label = axes[1].label(value)
            y = top + row * height + (height - text_size(label)[1]) // 2
            draw.text((pad, y), label, fill="black", font=font)
    for number, image in enumerate(images):
        row, column = divmod(number, columns)
        cell = image.convert("RGB").resize((width, height)) if image is not None else \
            Image.new("RGB", (width, height), (128, 128, 128))
        sheet.paste(cell, (left + column * width, top + row * height))
    return sheet


def save_grid(sheet, folder: Path, requests: list[GenerationRequest], axes: list[Axis],
              cells: list[str | None]) -> Path:
    """The sheet as a PNG in ``folder``, beside the cells' images, with the first cell's parameters
    (as A1111 writes its grids) and the axes and cell files as JSON. Written and named as the
    history writes images: under a temporary name, then given a name no file has."""
    import json

    from PIL.PngImagePlugin import PngInfo

    from tui.store.history import claim_name, temp_path_for
    from tui.store.images import format_parameters, prompt_slug

    info = PngInfo()
    info.add_text("parameters", format_parameters(requests[0], requests[0].seed or 0))
    info.add_text(GRID_KEY, json.dumps({"axes": [a.describe() for a in axes], "cells": cells}, ensure_ascii=False))
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"grid-{time.strftime('%H%M%S')}-{prompt_slug(requests[0].prompt)}.png"
    temp = temp_path_for(final)
    try:
        sheet.save(temp, format="PNG", pnginfo=info)
        return claim_name(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def grid_from_files(paths: list[str | None], requests: list[GenerationRequest], axes: list[Axis],
                    folder: Path | None = None) -> tuple[Path, tuple[int, int]]:
    """Compose and save the sheet from the cells' saved files (None where a cell made no image);
    it goes beside the first image unless ``folder`` says otherwise. Returns its path and size."""
    from PIL import Image

    images = []
    for path in paths:
        try:
            images.append(Image.open(path).convert("RGB") if path else None)
        except OSError:
            images.append(None)
    first = next((p for p in paths if p), None)
    if first is None:
        raise GridError("grid: no cell made an image")
    sheet = compose(images, axes)
    return save_grid(sheet, folder or Path(first).parent, requests, axes, paths), sheet.size


class PendingGrid:
    """A grid whose jobs the app queued: which job is which cell (by the job numbers the server
    answered with), and the cells' saved files."""

    def __init__(self, serial: int, requests: list[GenerationRequest], axes: list[Axis]) -> None:
        self.serial, self.requests, self.axes = serial, requests, axes
        self.cells: list[str | None] = [None] * len(requests)
        self.jobs: dict[int, int] = {}  # job id -> cell
        self.ended: set[int] = set()

    def tag(self, cell: int) -> str:
        """How the log names the job of ``cell``."""
        return f"X/Y grid {self.serial}, cell {cell + 1} of {len(self.requests)}"

    def cell_of_job(self, job: int | None) -> int | None:
        return self.jobs.get(job) if job is not None else None

    @property
    def finished(self) -> bool:
        return len(self.ended) == len(self.requests)

    def describe(self) -> str:
        return " x ".join(axis.describe() for axis in self.axes)

    def save_sheet(self):
        """Compose and save the contact sheet from the cells' files; a history entry for it (shown in
        the viewer, never written to the history). Raises GridError or OSError."""
        path, size = grid_from_files(self.cells, self.requests, self.axes)
        first = self.requests[0]
        sheet = HistoryEntry.for_request(first, "done", image_path=str(path), created_at=utc_now())
        sheet.prompt = f"X/Y grid: {self.describe()} of {first.prompt}"
        sheet.width, sheet.height = size
        return sheet
