"""Stores: the embedded on-disk default, the production store, the results and data stores.

A jobflow ``JobStore`` holds job outputs (``docs_store``) and large arrays (additional store
``"data"``). esen-flows also writes every result document, one structure at a time as it
finishes, to a ``"results"`` store: that is what makes an interrupted screen lose nothing and a
re-run skip finished work, and what ``esen_flows.analysis.query`` reads.

- ``default_store(path)``: maggma ``MontyStore``s (montydb on SQLite) under ``path``; no server.
- ``production_store()``: jobflow's configured ``JOB_STORE`` (``JOBFLOW_CONFIG_FILE``), e.g.
  MongoDB with GridFS. Give it a ``results`` additional store; without one, esen-flows uses a
  sibling collection ``<docs collection>_results`` of the docs store.

Modules: ``embedded`` (opening stores), ``results`` (documents and data records), ``arrays``
(compressed array records), ``records`` (phonopy/phono3py objects read back from the data
store), ``leases`` (one process computes a result, the others wait for it).
"""

from esen_flows.stores.arrays import decode_array, encode_array
from esen_flows.stores.embedded import (
    DATA,
    RESULTS,
    EmbeddedStore,
    StoreError,
    check_embedded,
    default_store,
    open_store,
    production_store,
)
from esen_flows.stores.records import (
    load_band_structure,
    load_mode_data,
    load_phono3py,
    load_phonopy,
    phonopy_from_record,
    phonopy_record,
)
from esen_flows.stores.results import (
    UNIQUE,
    data_store,
    find_documents,
    load_data,
    read_rows,
    results_store,
    save_data,
    save_documents,
    select_in,
)

__all__ = [
    "DATA",
    "RESULTS",
    "UNIQUE",
    "EmbeddedStore",
    "StoreError",
    "check_embedded",
    "data_store",
    "decode_array",
    "default_store",
    "encode_array",
    "find_documents",
    "load_band_structure",
    "load_data",
    "load_mode_data",
    "load_phono3py",
    "load_phonopy",
    "open_store",
    "phonopy_from_record",
    "phonopy_record",
    "production_store",
    "read_rows",
    "results_store",
    "save_data",
    "save_documents",
    "select_in",
]
