"""phonopy and phono3py objects, band structures and mode-resolved conductivities read back
from the data store, and the records the tasks write there.

The documents of ``esen_flows.schemas`` only describe results; what lies in the data store
(force constants, displacement datasets, mode-resolved arrays) is read back here, with the
document that names it and the store that holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobflow import JobStore
from phonopy import Phonopy
from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine

from esen_flows.dynamics.conductivity import phono3py_from_yaml
from esen_flows.dynamics.phonons import phonopy_from_yaml, phonopy_yaml
from esen_flows.schemas import DATA_READERS, MODE_ARRAYS, ConductivityDocument, PhononDocument
from esen_flows.stores.arrays import decode_array, encode_array
from esen_flows.stores.results import load_data

StoreLike = JobStore | str | Path


def phonopy_record(phonon: Phonopy) -> dict[str, Any]:
    """What the data store keeps of a phonon calculation: the phonopy YAML without force
    constants, and the force constants as a compressed binary array (as YAML text those of a
    500-atom cell are 2.25 million numbers: a minute to parse)."""
    return {
        "yaml": phonopy_yaml(phonon, force_constants=False),
        "force_constants": encode_array(phonon.force_constants),
    }


def phonopy_from_record(record: dict[str, Any]) -> Phonopy:
    """The ``Phonopy`` object of a ``phonopy_record`` (or of an older record whose YAML holds
    the force constants)."""
    phonon = phonopy_from_yaml(record["yaml"])
    if record.get("force_constants") is not None:
        phonon.force_constants = decode_array(record["force_constants"])
    return phonon


def load_phonopy(doc: PhononDocument, store: StoreLike) -> Phonopy:
    """The ``Phonopy`` object with the force constants of ``doc``, read back from the ``data``
    store of ``store`` (a ``JobStore`` or an embedded store's folder)."""
    return phonopy_from_record(load_data(store, "phonopy", doc.key, doc.label))


def load_band_structure(
    doc: PhononDocument, store: StoreLike | None = None
) -> PhononBandStructureSymmLine | None:
    """The band structure of ``doc``: its own, or (``band_structure_in_data``) the one kept in
    the data store of ``store`` (a ``JobStore`` or an embedded store's folder).

    Raises
    ------
    ValueError
        When the band structure is in the data store and no ``store`` is given.
    """
    if not doc.band_structure_in_data:
        return doc.band_structure
    if store is None:
        raise ValueError(f"{doc.label}: the band structure is in the data store: pass it")
    record = load_data(store, "phonopy", doc.key, doc.label)
    return PhononBandStructureSymmLine.from_dict(record["band_structure"])


def load_mode_data(doc: ConductivityDocument, store: StoreLike) -> dict[str, Any]:
    """The mode-resolved arrays of ``doc`` from the ``data`` store: ``mode_kappa`` (n_T, n_q,
    n_bands, 6) W/(m K) with q-weights, ``weights`` (n_q,), ``qpoints`` (n_q, 3),
    ``frequencies`` (n_q, n_bands) THz, ``heat_capacity`` (n_T, n_q, n_bands) eV/K, ``gamma``
    (n_T, n_q, n_bands) THz, ``temperatures`` (n_T,) K.

    Raises
    ------
    ValueError
        When no mode-resolved conductivity was stored (unstable or failed structure).
    """
    record = load_data(store, "phono3py", doc.key, doc.label)
    if "mode_kappa" not in record:
        raise ValueError(f"{doc.label}: no mode conductivity stored ({doc.reason or ''})")
    return {name: decode_array(record[name]) for name in MODE_ARRAYS}


def load_phono3py(doc: ConductivityDocument, store: StoreLike) -> Any:
    """The ``Phono3py`` object with the fc2 (and fc3 when computed) of ``doc``, read back from
    the ``data`` store of ``store``."""
    record = load_data(store, "phono3py", doc.key, doc.label)
    fc3 = decode_array(record["fc3"]) if "fc3" in record else None
    yaml = record["yaml"]  # phono3py_params.yaml, stored compressed
    text = yaml if isinstance(yaml, str) else decode_array(yaml).tobytes().decode()
    return phono3py_from_yaml(text, decode_array(record["fc2"]), fc3)


# the deprecated document methods (doc.to_phonopy(store) and kin) call these
DATA_READERS.update(
    load_phonopy=load_phonopy,
    load_band_structure=load_band_structure,
    load_mode_data=load_mode_data,
    load_phono3py=load_phono3py,
)
