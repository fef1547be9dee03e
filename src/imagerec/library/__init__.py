"""Search a photo library by what is in the photos.

Index a folder tree once (incrementally afterwards), then ask for "dog",
"photos like this one" or near-duplicates. The CLI verbs ``imagerec index``,
``search``, ``similar`` and ``duplicates`` are thin shells over these calls.

>>> from imagerec.library import index_library, search
>>> summary = index_library("../shared/photos", catalog="/tmp/photos.db")   # doctest: +SKIP
>>> [hit.path for hit in search("dog", catalog="/tmp/photos.db")]          # doctest: +SKIP
['pets.jpg', 'few-shot/dog_train_0.bmp']
"""

from __future__ import annotations

from .catalog import SCHEMA_VERSION, Catalog, CatalogBusyError, CatalogError, default_catalog_path, find_catalog
from .contact_sheet import write_contact_sheet
from .hierarchy import Hierarchy
from .indexer import IndexSummary, index_library
from .search import DuplicateGroup, Hit, duplicates, explain, search, similar, suggest

__all__ = [
    "SCHEMA_VERSION",
    "Catalog",
    "CatalogBusyError",
    "CatalogError",
    "DuplicateGroup",
    "Hierarchy",
    "Hit",
    "IndexSummary",
    "default_catalog_path",
    "duplicates",
    "explain",
    "find_catalog",
    "index_library",
    "search",
    "similar",
    "suggest",
    "write_contact_sheet",
]
