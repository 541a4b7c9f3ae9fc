"""Getting data in and out: the Table, encoders to the model space, readers, writers and sources."""

from ehrdiff.data.encoding import TableEncoder
from ehrdiff.data.io import read_table, write_table
from ehrdiff.data.table import KINDS, Table
from ehrdiff.data.writers import write_synthetic

__all__ = ["KINDS", "Table", "TableEncoder", "read_table", "write_synthetic", "write_table"]
