"""PhononMaker against phonopy driven directly (EMT), dynamic stability, the stores, atomate2."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from jobflow import run_locally
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from esen_flows.analysis import query
from esen_flows.dynamics.phonon_properties import dynamic_stability
from esen_flows.io import to_atoms
from esen_flows.makers import PhononMaker
from esen_flows.stores import load_phonopy

TEMPERATURES = np.arange(0.0, 1001.0, 10.0)


def cu3au(a: float = 3.80) -> Atoms:
    """L1_2 Cu3Au, 4 atoms, slightly off EMT's equilibrium."""
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.symbols[0] = "Au"
    return atoms


def labelled(atoms: Atoms, label: str) -> Atoms:
    atoms.info["label"] = label
    return atoms


def structures() -> list[Atoms]:
    return [
        labelled(bulk("Cu", "fcc", a=3.65), "Cu-fcc"),
        labelled(cu3au(), "Cu3Au-L12"),
        labelled(bulk("Cu", "bcc", a=2.90), "Cu-bcc"),
    ]


def phonopy_directly(atoms: Atoms, supercell_matrix, displacement: float = 0.01) -> Phonopy:
    """The phonopy user's own script: displacements, EMT forces one by one, symmetrised fc."""
    unitcell = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        scaled_positions=atoms.get_scaled_positions(),
    )
    phonon = Phonopy(unitcell, supercell_matrix=supercell_matrix, primitive_matrix="auto")
    phonon.generate_displacements(distance=displacement)
    forces = []
    for cell in phonon.supercells_with_displacements:
        sc = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        sc.calc = EMT()
        forces.append(sc.get_forces())
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    phonon.run_mesh(100.0, is_gamma_center=True)
    phonon.run_thermal_properties(t_min=0, t_max=1000, t_step=10, exclude_gamma_acoustic=True)
    return phonon


@pytest.fixture(scope="module")
def phonon_run(tmp_path_factory):
    """One PhononMaker job over three structures (relaxed with symmetry first), EMT."""
    from esen_flows.stores import default_store

    store = default_store(tmp_path_factory.mktemp("phonons"))
    maker = PhononMaker(potential="emt", min_length=8.0)
    run_locally(maker.make(structures()), store=store, create_folders=False, log=False)
    docs = {d.label: d for d in query(store, "phonon")}
    return store, docs


def test_maker_equals_phonopy_driven_directly(phonon_run):
    store, docs = phonon_run
    assert set(docs) == {"Cu-fcc", "Cu3Au-L12", "Cu-bcc"}
    for label, doc in docs.items():
        assert doc.status == "ok", doc.reason
        assert doc.relax_converged and doc.relax_max_force < 1e-4
        assert doc.spacegroup == doc.spacegroup_input  # the symmetric relaxation kept it
        direct = phonopy_directly(to_atoms(doc.structure), doc.supercell_matrix)
        ref = direct.get_thermal_properties_dict()
        mine = doc.thermal_properties
        np.testing.assert_allclose(mine.temperatures, TEMPERATURES)
        for key in ("free_energy", "entropy", "heat_capacity"):
            np.testing.assert_allclose(
                getattr(mine, key), ref[key], rtol=1e-6, atol=1e-9, err_msg=f"{label} {key}"
            )
        # frequencies along the document's band path, and the extremes over mesh and path
        qpoints = [q.frac_coords for q in doc.band_structure.qpoints]
        direct.run_qpoints(qpoints)
        freqs = direct.get_qpoints_dict()["frequencies"]
        np.testing.assert_allclose(np.asarray(doc.band_structure.bands).T, freqs, atol=1e-6)
        mesh = direct.get_mesh_dict()["frequencies"]
        assert doc.max_frequency == pytest.approx(max(mesh.max(), freqs.max()), abs=1e-6)
        # the stored force constants are phonopy's (compact here, full there)
        restored = load_phonopy(doc, store)
        full = direct.force_constants
        p2s = restored.primitive.p2s_map
        np.testing.assert_allclose(restored.force_constants, full[p2s], atol=1e-8)
        with pytest.warns(DeprecationWarning, match="load_phonopy"):  # the old name, one release
            old = doc.to_phonopy(store)
        np.testing.assert_array_equal(old.force_constants, restored.force_constants)


def test_acoustic_sum_rule_and_instability(phonon_run):
    store, docs = phonon_run
    for doc in docs.values():
        fc = load_phonopy(doc, store).force_constants  # (n_prim, n_super, 3, 3), eV/A^2
        assert np.abs(fc.sum(axis=1)).max() < 1e-10
        phonon = load_phonopy(doc, store)
        phonon.run_qpoints([[0.0, 0.0, 0.0]])
        gamma = phonon.get_qpoints_dict()["frequencies"][0]
        assert np.abs(gamma[:3]).max() < 1e-3  # THz
    assert docs["Cu-fcc"].dynamically_stable and docs["Cu3Au-L12"].dynamically_stable
    bcc = docs["Cu-bcc"]
    assert bcc.dynamically_stable is False  # EMT bcc Cu: imaginary modes (a result, not an error)
    assert bcc.min_frequency < -0.5 and bcc.n_imaginary > 0


def test_dynamic_stability_rule():
    gamma, other = [[0, 0, 0]], [[0.5, 0, 0]]
    ok = [[-0.009, 0.0, 0.001, 3.0]]
    assert dynamic_stability(gamma, ok).dynamically_stable
    assert not dynamic_stability(gamma, [[-0.011, 0.0, 0.0, 3.0]]).dynamically_stable
    assert not dynamic_stability(gamma, [[0.0, 0.0, 0.0, -1e-4]]).dynamically_stable  # optical
    assert not dynamic_stability(other, [[-1e-6, 1.0, 2.0, 3.0]]).dynamically_stable
    assert dynamic_stability([[1, 0, -1]], ok).dynamically_stable  # an image of Gamma
    result = dynamic_stability(gamma + other, [[-0.009, 0.0, 0.0, 3.0], [-0.5, 1.0, 2.0, 3.0]])
    assert result.n_imaginary == 1 and result.min_frequency == -0.5
    assert result.max_frequency == 3.0


def test_bad_structure_fails_alone_and_rerun_computes_nothing(tmp_path):
    from esen_flows.stores import default_store, results_store

    store = default_store(tmp_path / "store")
    items = [labelled(bulk("Cu", "fcc", a=3.6), "Cu"), labelled(bulk("Si", "diamond"), "Si")]
    maker = PhononMaker(potential="emt", relax=False, supercell_matrix=[3, 3, 3])
    run_locally(maker.make(items), store=store, create_folders=False, log=False)
    docs = {d.label: d for d in query(store, "phonon")}
    assert docs["Cu"].status == "ok" and docs["Cu"].supercell_matrix == np.diag([3] * 3).tolist()
    assert docs["Si"].status == "failed" and "Si" in docs["Si"].reason
    results = results_store(store)
    n_rows = results.count({"kind": "phonon"})
    run_locally(maker.make(items), store=store, create_folders=False, log=False)
    assert results.count({"kind": "phonon"}) == n_rows  # nothing recomputed, nothing rewritten
    # the same structure under another label: the stored result, relabelled, and its force
    # constants read back by key (the one reuse policy of every task)
    job = maker.make([labelled(bulk("Cu", "fcc", a=3.6), "Cu-again")])
    responses = run_locally(job, store=store, create_folders=False, log=False)
    (again,) = responses[job.uuid][1].output
    assert again.label == "Cu-again" and again.key == docs["Cu"].key
    assert again.wall_time == docs["Cu"].wall_time  # copied, not computed
    np.testing.assert_array_equal(
        load_phonopy(again, store).force_constants, load_phonopy(docs["Cu"], store).force_constants
    )


def test_supercells_split_across_batches_give_the_same_force_constants():
    from esen_flows.potentials import BatchBudget, get_potential
    from esen_flows.tasks import PhononSettings, run_phonons

    class SmallBudgetEMT:
        """EMT whose batches hold at most 40 atoms: every 32-atom supercell goes alone."""

        def __init__(self):
            self.inner = get_potential("emt")
            self.name, self.checksum = self.inner.name, self.inner.checksum
            self.elements = self.inner.elements
            self.batches: list[int] = []

        def batch_budget(self):
            return BatchBudget(max_atoms=40)

        def evaluate(self, structures):
            self.batches.append(len(structures))
            return self.inner.evaluate(structures)

        def as_calculator(self):
            return self.inner.as_calculator()

    from esen_flows.io import to_structure, with_label

    items = [with_label(to_structure(cu3au(3.7)), "a"), with_label(to_structure(cu3au()), "b")]
    settings = PhononSettings(relax=False, supercell_matrix=((2, 0, 0), (0, 2, 0), (0, 0, 2)))
    small = SmallBudgetEMT()
    split = run_phonons(items, small, settings)
    whole = run_phonons(items, get_potential("emt"), settings)
    assert max(small.batches) == 1 and len(small.batches) == sum(d.n_displacements for d in split)
    for a, b in zip(split, whole, strict=True):
        assert a.status == b.status == "ok"
        np.testing.assert_allclose(
            a.thermal_properties.heat_capacity, b.thermal_properties.heat_capacity, rtol=1e-12
        )


def test_export_writes_phonopy_params_that_phonopy_loads(phonon_run, tmp_path):
    import phonopy

    from esen_flows.cli import main

    store, docs = phonon_run
    folder = store.docs_store.database_path
    assert main(["export", "--store", folder, "--label", "Cu-fcc", "--out", str(tmp_path)]) == 0
    path = tmp_path / "Cu-fcc" / "phonopy_params.yaml"
    loaded = phonopy.load(path)  # phonopy's own reader: fc from the file's forces
    loaded.run_mesh(100.0, is_gamma_center=True)
    loaded.run_thermal_properties(t_min=0, t_max=1000, t_step=10, exclude_gamma_acoustic=True)
    ref = loaded.get_thermal_properties_dict()["heat_capacity"]
    np.testing.assert_allclose(docs["Cu-fcc"].thermal_properties.heat_capacity, ref, rtol=1e-6)
    assert main(["export", "--store", folder, "--label", "nope", "--out", str(tmp_path)]) != 0


def test_bad_settings_are_refused_when_the_flow_is_made():
    with pytest.raises(ValueError, match="supercell_matrix"):
        PhononMaker(supercell_matrix=[[1, 0], [0, 1]]).make(bulk("Cu"))
    with pytest.raises(ValueError, match="supercell_matrix"):
        PhononMaker(supercell_matrix=[[1, 0, 0], [0, 1]]).make(bulk("Cu"))
    with pytest.raises(ValueError, match="displacement"):
        PhononMaker(displacement=0.0).make(bulk("Cu"))


def test_atomate2_phonon_maker_agrees_where_settings_match(tmp_path, store):
    """atomate2's forcefield PhononMaker with the EMT calculator, no relaxation, the same cell,
    supercell and displacement: the same frequencies; thermal properties within the difference
    of the two q-meshes and integrations (atomate2 integrates a tetrahedron DOS with pymatgen)."""
    pytest.importorskip("atomate2")
    import warnings

    from atomate2.common.schemas.phonons import PhononBSDOSDoc
    from atomate2.forcefields.flows.phonons import PhononMaker as Atomate2PhononMaker
    from atomate2.forcefields.jobs import ForceFieldStaticMaker
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    from esen_flows.io import to_structure

    cell = to_structure(bulk("Cu", "fcc", a=3.60))
    matrix = [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    emt = {"@module": "ase.calculators.emt", "@callable": "EMT"}
    theirs = Atomate2PhononMaker(
        bulk_relax_maker=None,
        static_energy_maker=None,
        phonon_displacement_maker=ForceFieldStaticMaker(force_field_name=emt),
        displacement=0.01,
    ).make(cell, supercell_matrix=matrix)
    a2_store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_locally(theirs, store=a2_store, create_folders=True, root_dir=tmp_path, log=False)
    out = a2_store.query_one({"name": "generate_frequencies_eigenvectors"}, load=True)["output"]
    a2 = PhononBSDOSDoc.model_validate(out)

    maker = PhononMaker(potential="emt", relax=False, supercell_matrix=matrix)
    run_locally(maker.make(cell), store=store, create_folders=False, log=False)
    (mine,) = query(store, "phonon")
    phonon = load_phonopy(mine, store)
    phonon.run_qpoints([q.frac_coords for q in a2.phonon_bandstructure.qpoints])
    freqs = phonon.get_qpoints_dict()["frequencies"]
    # atomate2 does not symmetrise its force constants: agreement to that level
    np.testing.assert_allclose(freqs, np.asarray(a2.phonon_bandstructure.bands).T, atol=1e-4)
    assert mine.dynamically_stable == (not a2.has_imaginary_modes)
    i = list(a2.temperatures).index(300)
    at300 = mine.thermal_properties.at(300.0)
    assert at300["heat_capacity"] == pytest.approx(a2.heat_capacities[i], rel=2e-3)
    assert at300["entropy"] == pytest.approx(a2.entropies[i], rel=2e-3)
    assert at300["free_energy"] * 1000 == pytest.approx(a2.free_energies[i], rel=5e-3)  # J/mol


def test_screen_adds_phonons_for_the_candidates_at_run_time(store, tmp_path):
    from conftest import alloy_structures

    from esen_flows.analysis.report import write_report
    from esen_flows.makers import ScreeningMaker

    items = [*alloy_structures(4, seed=3), labelled(cu3au(), "Cu3Au-L12")]
    maker = ScreeningMaker(
        potential="emt",
        e_hull_max=0.03,
        phonons=True,
        phonon_maker=PhononMaker(min_length=6.0, fmax=1e-3, max_steps=300),
        phonon_batch_size=2,
    )
    flow = maker.make(items)
    assert [j.name for j in flow.jobs][-2:] == ["hull", "phonon stage"]
    run_locally(flow, store=store, create_folders=False, log=False)
    stability = {d.label: d for d in query(store, "stability")}
    candidates = {label for label, d in stability.items() if d.candidate}
    phonons = {d.label: d for d in query(store, "phonon")}
    assert "Cu3Au-L12" in candidates and set(phonons) == candidates
    assert all(d.status == "ok" for d in phonons.values())
    ran = {d["name"] for d in store.query({"name": {"$regex": "^phonons "}}, properties=["name"])}
    n_jobs = -(-len(candidates) // 2)  # phonon_batch_size=2, jobs added by the stage at run time
    assert ran == {f"phonons {b + 1}/{n_jobs}" for b in range(n_jobs)}
    html = write_report(store, tmp_path / "report.html").read_text()
    assert "<h2>Phonons</h2>" in html and "Cu3Au-L12" in html and "dynamically_stable" in html


def test_one_supercell_per_structure(store):
    items = [labelled(bulk("Cu", "fcc", a=3.6), "Cu"), labelled(cu3au(), "Cu3Au")]
    maker = PhononMaker(potential="emt", relax=False, min_length=5.0)
    run_locally(
        maker.make(items, supercell_matrices=[[2, 3, 2], None]),
        store=store,
        create_folders=False,
        log=False,
    )
    docs = {d.label: d for d in query(store, "phonon")}
    assert docs["Cu"].supercell_matrix == np.diag([2, 3, 2]).tolist()
    assert docs["Cu"].settings["supercell_matrix"] == np.diag([2, 3, 2]).tolist()
    assert docs["Cu3Au"].supercell_matrix == np.diag([2, 2, 2]).tolist()  # 5 A / 3.8 A -> 2
    with pytest.raises(ValueError, match="2 structures"):
        maker.make(items, supercell_matrices=[[2, 2, 2]])


def test_random_displacements_fit_the_systematic_force_constants(tmp_path):
    """fc2 from random +- displacements fitted with symfc gives the systematic set's phonons on
    a low-symmetry ternary the tests have not seen (Cm CuAgAu3, EMT); the seed and the count
    are recorded, the same seed gives the same result, the stored force constants reload."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from esen_flows.candidates import generate_candidates
    from esen_flows.potentials import get_potential
    from esen_flows.stores import default_store
    from esen_flows.tasks import PhononSettings, run_phonons

    (cell,) = [s for s in generate_candidates() if s.properties["label"] == "CuAgAu3-fcc-161"]
    assert SpacegroupAnalyzer(cell, 1e-3).get_space_group_symbol() == "Cm"
    emt = get_potential("emt", dtype="float64")
    common = dict(supercell_matrix=[2, 2, 2], mesh=(8, 8, 8))
    (systematic,) = run_phonons([cell], emt, PhononSettings(**common))
    random = PhononSettings(**common, displacements="random", plusminus=True, random_seed=7)
    store = default_store(tmp_path / "store")
    (fitted,) = run_phonons([cell], emt, random, store=store)
    assert fitted.status == "ok" and fitted.dynamically_stable
    assert fitted.settings["random_seed"] == 7 and fitted.settings["displacements"] == "random"
    assert "random_seed" not in systematic.settings  # systematic keys as before
    assert fitted.n_displacements % 2 == 0 and fitted.n_displacements != systematic.n_displacements
    ours, ref = fitted.thermal_properties.at(300), systematic.thermal_properties.at(300)
    for name in ("free_energy", "entropy", "heat_capacity"):
        assert ours[name] == pytest.approx(ref[name], rel=1e-3)
    assert fitted.max_frequency == pytest.approx(systematic.max_frequency, rel=5e-3)
    (again,) = run_phonons([cell], emt, random)  # no store: computed anew, the same seed
    assert again.thermal_properties.at(300) == ours
    phonon = load_phonopy(fitted, store)  # the fitted force constants give the bands stored
    qpoints = [q.frac_coords for q in fitted.band_structure.qpoints[:5]]
    phonon.run_qpoints(qpoints)
    bands = np.asarray(fitted.band_structure.bands)[:, :5].T
    np.testing.assert_allclose(phonon.get_qpoints_dict()["frequencies"], bands, atol=1e-6)
