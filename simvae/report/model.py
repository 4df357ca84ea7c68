"""The report model: what a report shows (sections of tables, figures, notes and code), built
once and written by a renderer (Markdown here; an HTML renderer writes the same structure).
Builders decide what to show; renderers only lay it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: str  # relative to the report
    caption: str


@dataclass
class Note:
    text: str
    level: Literal["info", "warning"] = "info"


@dataclass
class Code:
    text: str
    lang: str = ""


Block = Union[Table, Figure, Note, Code]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # shown under the title (e.g. an unfinished run)


def _block_markdown(block: Block) -> list[str]:
    if isinstance(block, Table):
        lines = [block.caption, ""] if block.caption else []
        lines += ["| " + " | ".join(block.columns) + " |", "|" + "---|" * len(block.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in block.rows]
        return lines + [""]
    if isinstance(block, Figure):
        return [f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""]
    if isinstance(block, Note):
        return [("> **Warning:** " if block.level == "warning" else "") + block.text, ""]
    if isinstance(block, Code):
        return [f"```{block.lang}", block.text, "```", ""]
    raise TypeError(f"unknown report block {type(block).__name__}")


def blocks_markdown(blocks: list[Block]) -> str:
    """Markdown of a list of blocks, without a title."""
    return "\n".join(line for block in blocks for line in _block_markdown(block))


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    for note in report.notes:
        lines += _block_markdown(note)
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _block_markdown(block)
    return "\n".join(lines)
