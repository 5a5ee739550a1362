"""What matching keeps between runs: the catalog of compiled queries and the latest indexes.

A :class:`MatchCache` belongs to one runtime (digestd.runtime), never to the module: the
daemon's jobs and the web application each reuse the compiled queries and the index of the
papers they matched last, and a test makes its own. Both parts are bounded, and ``clear``
drops them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from digestd.match.compile import Catalog
from digestd.match.engine import PaperIndex, index_papers
from digestd.match.fields import PaperText
from digestd.match.text import WordTable

# Past this many interned terms (or compiled query texts) the catalog starts over.
MAX_CATALOG_TERMS = 1_000_000
MAX_CATALOG_PROFILES = 2_000_000
# The send job, the feeds job and the web application's query check each keep theirs.
INDEXES_KEPT = 3

IndexKey = tuple[tuple[int, PaperText], ...]


class MatchCache:
    """The catalog queries are compiled into, the indexes of the latest runs' papers, and the
    word table those indexes looked their words up in.

    The web application's threads and the daemon's jobs share one, hence the lock."""

    def __init__(
        self,
        *,
        max_terms: int = MAX_CATALOG_TERMS,
        max_profiles: int = MAX_CATALOG_PROFILES,
        indexes_kept: int = INDEXES_KEPT,
    ) -> None:
        self.max_terms = max_terms
        self.max_profiles = max_profiles
        self.indexes_kept = indexes_kept
        self._catalog = Catalog()
        self._indexes: OrderedDict[IndexKey, PaperIndex[int]] = OrderedDict()
        self._lock = threading.Lock()
        self.words = WordTable()  # bounded on its own

    def catalog(self) -> Catalog:
        """The catalog to compile into; a new one once the current one passed its bound (a
        profile set keeps the catalog it was compiled in)."""
        with self._lock:
            catalog = self._catalog
            if len(catalog.terms) > self.max_terms or len(catalog.profiles) > self.max_profiles:
                catalog = self._catalog = Catalog()
                self._indexes.clear()  # an index remembers the phrase pairs of the old one
            return catalog

    def index(self, texts: Mapping[int, PaperText]) -> PaperIndex[int]:
        """``texts`` indexed, or the index of an earlier run over exactly the same papers."""
        key = tuple(texts.items())
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
                return index
        index = index_papers(texts, words=self.words)
        with self._lock:
            self._indexes[key] = index
            while len(self._indexes) > self.indexes_kept:
                self._indexes.popitem(last=False)
        return index

    def clear(self) -> None:
        """Drop the catalog, the indexes and the word table."""
        with self._lock:
            self._catalog = Catalog()
            self._indexes.clear()
            self.words.clear()
