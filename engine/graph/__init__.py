"""What a SavedModel's graph says about its receptive field: per-axis index maps, a rule per op type, the walk."""

from .index_maps import Geo, Span
from .walker import Layer, Theory, px, read_theory, span_text

__all__ = ["Geo", "Span", "Layer", "Theory", "px", "read_theory", "span_text"]
