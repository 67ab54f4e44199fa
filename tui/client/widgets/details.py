"""Every parameter of a history entry as a two-column table, optionally highlighting
the ones that differ from another entry (for compare)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from tui.engine.memory import format_bytes
from tui.store.history import HistoryEntry
from tui.text import plural, visible


def entry_fields(entry: HistoryEntry, lineage: list[HistoryEntry] | None = None) -> list[tuple[str, str]]:
    """The entry's parameters in display order; ``lineage``: the images it was made from, nearest
    first (History.lineage), shown as its chain of edits."""
    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.2f} s"

    machine = " · ".join(part for part in (entry.chip, entry.os_version,
                                           entry.torch_version and f"torch {entry.torch_version}") if part)
    fields = _fields(entry, seconds, machine)
    chain = [("made from", " <- ".join(f"#{e.id} {_short(e.prompt)}" for e in lineage))] if lineage else []
    return [*fields[:2], *_made_with(entry), *chain, *fields[2:]]  # after the prompt and negative prompt


def _short(text: str, limit: int = 32) -> str:
    line = " ".join(text.split())
    return f'"{line}"' if len(line) <= limit else f'"{line[:limit - 1]}…"'


def _made_with(entry: HistoryEntry) -> list[tuple[str, str]]:
    """What the entry's ``extra`` adds, each only where the image has it: its wildcard template,
    its source image (image-to-image, hires fix), its LoRAs and embeddings."""
    extra = entry.extras()
    rows = []
    if extra.get("template"):
        rows.append(("template", str(extra["template"])))
    if extra.get("source") and extra.get("edit"):
        rows.append(("edited from", f"{extra['source']} (by the prompt's instruction)"))
    elif extra.get("source"):
        how = f"strength {extra.get('strength', '')}" + (f", hires x{extra['hires']:g}" if extra.get("hires") else "")
        rows.append(("from image", f"{extra['source']} ({how})"))
    elif extra.get("hires"):
        rows.append(("hires fix", f"x{extra['hires']:g} at strength {extra.get('strength', '')}"))
    if extra.get("shift"):
        rows.append(("shift", f"{extra['shift']:g}"))
    for key, label in (("lora_hashes", "LoRAs"), ("ti_hashes", "embeddings")):
        if isinstance(extra.get(key), dict) and extra[key]:
            rows.append((label, ", ".join(f"{name} ({value})" for name, value in extra[key].items())))
    return rows


def _fields(entry: HistoryEntry, seconds, machine: str) -> list[tuple[str, str]]:
    return [
        ("prompt", entry.prompt),
        ("negative", entry.negative_prompt),
        ("seed", "" if entry.seed is None else str(entry.seed)),
        ("steps", str(entry.steps)),
        ("guidance", f"{entry.guidance:g}"),
        ("size", f"{entry.width}x{entry.height}"),
        ("scheduler", entry.scheduler),
        ("model", f"{entry.model} ({entry.extras()['quantization']})" if entry.extras().get("quantization")
         else entry.model),
        ("device", f"{entry.device} {entry.dtype}".strip()),
        *((("machine", machine),) if machine else ()),  # entries from before it was recorded have none
        ("status", entry_status(entry)),
        ("error", entry.error or ""),
        ("time", entry.created_at.replace("T", " ")[:19]),
        ("duration", seconds(entry.total_s)),
        ("it/s", "" if entry.it_per_s is None else f"{entry.it_per_s:.2f}"),
        ("first step", seconds(entry.first_step_s)),
        ("peak memory", "" if entry.peak_memory is None else format_bytes(entry.peak_memory)),
        ("file", entry.image_path or ""),
    ]


def settings_line(seed: int | None, made) -> str:
    """"seed · size · steps · scheduler" of ``made`` (a request or a history entry), for captions."""
    return f"seed {seed} · {made.width}x{made.height} · {plural(made.steps, 'step')} · {made.scheduler}"


def entry_status(entry: HistoryEntry) -> str:
    return "missing" if entry.status == "done" and entry.missing else entry.status


def details_table(entry: HistoryEntry, other: HistoryEntry | None = None,
                  lineage: list[HistoryEntry] | None = None) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    if other is not None:
        table.add_column(ratio=1)
    theirs = dict(entry_fields(other)) if other is not None else {}
    for name, value in entry_fields(entry, lineage):
        if other is None:
            table.add_row(Text(name), Text(visible(value)))
            continue
        differs = name not in ("time", "file", "duration", "it/s", "first step", "peak memory") and \
            value != theirs.get(name, "")
        style = "bold yellow" if differs else ""
        table.add_row(Text(name, style=style), Text(visible(value), style=style), Text(visible(theirs.get(name, "")),
                                                                                      style=style))
    return table
