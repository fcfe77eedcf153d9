"""The report's document model, defined in the plugin API (`cmp.api.document`): a
report-section plugin returns these types, so they sit below `cmp.report`, which
renders them. Re-exported here for the report's modules."""

from __future__ import annotations

from cmp.api.document import Block, Figure, Section, Table

__all__ = ["Block", "Figure", "Section", "Table"]
