"""Classes of a class map: value, name and colour, the qualitative palette and its defaults.

Shared by the class map (engine.class_map, which reads class tables from files) and the model card
(engine.card, which carries a model's classes)."""

from dataclasses import dataclass

from .errors import EngineError

CLASS_NODATA = 255  # class map (and confidence) value of no-data pixels: at most 255 classes
MAX_CLASSES = 255
# a qualitative palette (Tableau 20, strong colours first), cycled beyond 20 classes
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")


@dataclass(frozen=True)
class ClassEntry:
    """One class: its value in the class map, its name and its colour (r, g, b, a), 0..255 each."""

    value: int
    name: str
    color: tuple


def hex_color(text, where: str, field: str = "class_table") -> tuple:
    """(r, g, b, a) of `#rrggbb` or `#rrggbbaa`; an EngineError naming `where` and `field` for anything else."""
    digits = text.strip().lstrip("#") if isinstance(text, str) else ""
    if len(digits) not in (6, 8) or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise EngineError(f"{where}: {text!r} is not a colour; write it #rrggbb (e.g. #2ca02c).", field)
    values = [int(digits[i:i + 2], 16) for i in range(0, len(digits), 2)]
    return tuple(values + [255] * (4 - len(values)))


def default_table(classes: int) -> tuple:
    """"class 0" .. "class N-1" in the qualitative palette."""
    return tuple(ClassEntry(i, f"class {i}", hex_color(PALETTE[i % len(PALETTE)], "palette")) for i in range(classes))
