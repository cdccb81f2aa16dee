"""eSEN in float64 with a small random model: symmetry, conservation, smoothness, batching,
checkpoints. Finite differences and ASE geometry are the references."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from conftest import tiny_esen_config
from scipy.spatial.transform import Rotation

from esen_flows.model import ESEN, AtomsBatch, CheckpointError, ESENConfig
from esen_flows.model.graph import edge_vectors, radius_graph_pbc
from esen_flows.model.layers import EdgeInputs, gate_groups, polynomial_envelope
from esen_flows.model.rotation import edge_rotation

CUTOFF = 4.0


@pytest.fixture(scope="module", params=[(2, 1), (2, 2), (3, 2)], ids=lambda p: f"l{p[0]}m{p[1]}")
def model(request) -> ESEN:
    torch.manual_seed(0)
    lmax, mmax = request.param
    cfg = tiny_esen_config(
        lmax=lmax,
        mmax=mmax,
        ffn_hidden_channels=16,
        num_layers=2,
        cutoff=CUTOFF,
        elements=("Cu", "Au", "Ag", "Pd"),
    )
    m = ESEN(cfg).double().eval()
    with torch.no_grad():  # make the head non-trivial: random element energies too
        m.element_energies[[29, 79, 47, 46]] = torch.tensor([-3.5, -3.0, -2.5, -4.0]).double()
    return m


def run(model: ESEN, atoms_list, **kw):
    out = model(AtomsBatch.from_atoms(list(atoms_list), dtype=torch.float64), **kw)
    return {k: v.detach().numpy() for k, v in out.items()}


def alloy(seed=0, repeat=(2, 1, 1)) -> Atoms:
    rng = np.random.default_rng(seed)
    a = bulk("Cu", "fcc", a=3.7).repeat(repeat)
    a.set_chemical_symbols(rng.choice(["Cu", "Au", "Ag", "Pd"], size=len(a)))
    a.set_cell(a.cell.array @ (np.eye(3) + 0.05 * rng.standard_normal((3, 3))), scale_atoms=True)
    a.rattle(0.1, seed=seed)
    return a


def energy(model, a) -> float:
    return float(run(model, [a], compute_forces=False, compute_stress=False)["energy"][0])


def test_rotation_invariance_and_covariance(model):
    a = alloy(1)
    ref = run(model, [a])
    for seed in range(3):
        r = Rotation.random(random_state=seed).as_matrix()
        b = a.copy()
        b.set_cell(a.cell.array @ r.T, scale_atoms=False)
        b.positions = a.positions @ r.T
        out = run(model, [b])
        assert out["energy"][0] == pytest.approx(ref["energy"][0], abs=1e-10)
        np.testing.assert_allclose(out["forces"], ref["forces"] @ r.T, atol=1e-10)
        np.testing.assert_allclose(out["stress"][0], r @ ref["stress"][0] @ r.T, atol=1e-10)


def test_translation_and_permutation_invariance(model):
    a = alloy(2)
    ref = run(model, [a])
    b = a.copy()
    b.positions += [1.3, -7.1, 20.2]  # also moves atoms across the periodic boundary
    out = run(model, [b])
    assert out["energy"][0] == pytest.approx(ref["energy"][0], abs=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-10)
    a = alloy(2, repeat=(2, 2, 1))  # 4 atoms, mixed species: the pair halves must not mix
    ref = run(model, [a])
    perm = np.arange(len(a))[::-1]
    out = run(model, [a[perm]])
    assert out["energy"][0] == pytest.approx(ref["energy"][0], abs=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], atol=1e-10)


def test_forces_are_minus_energy_gradient(model):
    a = alloy(3)
    forces = run(model, [a])["forces"]
    h = 1e-5
    for i in range(len(a)):
        for k in range(3):
            p, m = a.copy(), a.copy()
            p.positions[i, k] += h
            m.positions[i, k] -= h
            fd = -(energy(model, p) - energy(model, m)) / (2 * h)
            assert forces[i, k] == pytest.approx(fd, abs=1e-7)


def test_stress_is_strain_derivative(model):
    a = alloy(4)
    stress = run(model, [a])["stress"][0]
    eps = 1e-5
    for i, j in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]:
        d = np.zeros((3, 3))
        d[i, j] = d[j, i] = eps
        p, m = a.copy(), a.copy()
        p.set_cell(a.cell.array @ (np.eye(3) + d), scale_atoms=True)
        m.set_cell(a.cell.array @ (np.eye(3) - d), scale_atoms=True)
        fd = (energy(model, p) - energy(model, m)) / (2 * eps) / a.get_volume()
        fd /= 1 if i == j else 2
        assert stress[i, j] == pytest.approx(fd, abs=1e-8)


def test_smooth_at_cutoff_and_zero_beyond(model):
    """A pair in a big box: energy and force go to zero smoothly as d crosses the cutoff."""

    def pair(d):
        a = Atoms("CuAu", positions=[[5, 5, 5], [5 + d, 5, 5]], cell=[20, 20, 20], pbc=True)
        out = run(model, [a])
        return out["energy"][0], out["forces"][1, 0]

    far_e, far_f = pair(CUTOFF + 0.5)
    assert far_f == 0.0
    assert pair(CUTOFF + 2.0)[0] == pytest.approx(far_e, abs=1e-14)
    for delta in (1e-2, 1e-3):
        e_in, f_in = pair(CUTOFF - delta)
        # value and first two derivatives vanish at the cutoff: E - E_far ~ delta^3
        assert abs(e_in - far_e) < 50 * delta**3
        assert abs(f_in) < 50 * delta**2
    e_at, f_at = pair(CUTOFF - 1e-9)
    assert e_at == pytest.approx(far_e, abs=1e-12) and abs(f_at) < 1e-9


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("sign", [1, -1])
def test_edges_exactly_along_axes(model, axis, sign):
    """Edges along +-x, +-y, +-z: finite forces that match finite differences."""
    pos = np.array([[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]])
    pos[1, axis] += sign * 2.3
    a = Atoms("CuPd", positions=pos, cell=[9.0, 9.0, 9.0], pbc=True)
    forces = run(model, [a])["forces"]
    assert np.all(np.isfinite(forces))
    h = 1e-5
    for k in range(3):
        p, m = a.copy(), a.copy()
        p.positions[1, k] += h
        m.positions[1, k] -= h
        fd = -(energy(model, p) - energy(model, m)) / (2 * h)
        assert forces[1, k] == pytest.approx(fd, abs=1e-7)
    off_axis = [k for k in range(3) if k != axis]
    assert np.abs(forces[:, off_axis]).max() < 1e-10  # symmetry: force along the bond


def test_supercell_is_extensive(model):
    a = alloy(5, repeat=(1, 1, 1))
    small = run(model, [a])
    big_atoms = a.repeat((2, 3, 1))
    big = run(model, [big_atoms])
    assert big["energy"][0] == pytest.approx(6 * small["energy"][0], abs=1e-9)
    np.testing.assert_allclose(big["forces"], np.tile(small["forces"], (6, 1)), atol=1e-10)
    np.testing.assert_allclose(big["stress"][0], small["stress"][0], atol=1e-10)


def test_small_and_triclinic_cells_see_far_images(model):
    """A 1-atom cell much smaller than the cutoff equals the same crystal as a supercell."""
    a = bulk("Cu", "fcc", a=3.6)  # primitive: 2.5 A vectors, cutoff 4 A reaches 2 cells away
    assert energy(model, a.repeat((3, 3, 3))) == pytest.approx(27 * energy(model, a), abs=1e-9)


def test_mixed_batch_equals_each_alone(model):
    structures = [alloy(6), alloy(7, repeat=(1, 1, 1)), bulk("Au", "fcc", a=4.1, cubic=True)]
    batch = run(model, structures)
    at = 0
    for k, s in enumerate(structures):
        alone = run(model, [s])
        assert batch["energy"][k] == pytest.approx(alone["energy"][0], abs=1e-10)
        np.testing.assert_allclose(batch["forces"][at : at + len(s)], alone["forces"], atol=1e-10)
        np.testing.assert_allclose(batch["stress"][k], alone["stress"][0], atol=1e-10)
        at += len(s)


def test_unsupported_element(model):
    a = bulk("Fe", "bcc", a=2.87)
    with pytest.raises(ValueError, match="element Fe is not supported"):
        run(model, [a])


def test_checkpoint_round_trip(model, tmp_path):
    path = model.save(tmp_path / "m.pt", metadata={"note": "test", "epochs": 3})
    raw = torch.load(path, weights_only=True)  # plain data: loads with weights_only
    assert raw["format"] == "esen-flows-checkpoint"
    assert raw["config"]["lmax"] == model.config.lmax
    again = ESEN.load(path).double().eval()
    assert again.metadata == {"note": "test", "epochs": 3}
    a = alloy(8)
    np.testing.assert_allclose(run(again, [a])["forces"], run(model, [a])["forces"], atol=1e-12)
    assert run(again, [a])["energy"][0] == pytest.approx(run(model, [a])["energy"][0], abs=1e-12)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/esen_flows_pwned",))


def test_bad_checkpoints_are_errors_not_code(tmp_path):
    import os

    marker = "/tmp/esen_flows_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"payload": _Evil()}, evil)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    pickled = tmp_path / "pickle.pt"
    pickled.write_bytes(pickle.dumps({"format": "x"}))
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}, "something": 1}, other)
    for path in (evil, text, pickled, other, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError, match=str(path.name)):
            ESEN.load(path)
    assert not os.path.exists(marker), "loading a checkpoint executed code"


def test_wrong_weights_rejected(model, tmp_path):
    path = model.save(tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    data["config"]["channels"] = 16
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"do not match|wrong shape"):
        ESEN.load(path)


def test_esen_30m_oam_parameter_count():
    published = 30_161_153
    assert ESEN(ESENConfig.esen_30m_oam()).num_parameters() == published


def test_passes_of_whole_structures_equal_one_pass(model):
    structures = [alloy(9), alloy(10, repeat=(1, 1, 1)), alloy(11), alloy(12, repeat=(2, 2, 1))]
    data = AtomsBatch.from_atoms(structures, dtype=torch.float64)
    one = model(data, pass_atoms=None)
    split = model(data, pass_atoms=5)  # one structure or two small ones per pass
    for key in ("energy", "forces", "stress"):
        np.testing.assert_allclose(split[key].detach(), one[key].detach(), atol=1e-10)


def test_direct_force_head_is_equivariant_and_separate():
    torch.manual_seed(2)
    cfg = tiny_esen_config(mmax=1, cutoff=CUTOFF, direct_forces=True)
    m = ESEN(cfg).double().eval()
    a = alloy(13)
    direct = run(m, [a], direct=True)
    assert set(direct) == {"energy", "forces"} and direct["forces"].shape == (len(a), 3)
    r = Rotation.random(random_state=5).as_matrix()
    b = a.copy()
    b.set_cell(a.cell.array @ r.T, scale_atoms=False)
    b.positions = a.positions @ r.T
    np.testing.assert_allclose(
        run(m, [b], direct=True)["forces"], direct["forces"] @ r.T, atol=1e-10
    )
    conservative = run(m, [a])["forces"]  # the head does not change the conservative path
    assert not np.allclose(conservative, direct["forces"])
    with pytest.raises(ValueError, match="no direct-force head"):
        run(ESEN(ESENConfig(lmax=1, mmax=1, channels=4, num_layers=1)).double(), [a], direct=True)


def test_continuous_where_the_edge_frame_switches_chart(model):
    """The frame construction changes chart at e_y = 0; energy and forces must not notice."""

    def pair(y):
        pos = [[4.0, 4.0, 4.0], [4.0 + 1.6, 4.0 + y, 4.0 + 1.2]]
        a = Atoms("CuAu", positions=pos, cell=[9.0, 9.0, 9.0], pbc=True)
        return run(model, [a])

    up, down = pair(1e-9), pair(-1e-9)
    assert up["energy"][0] == pytest.approx(down["energy"][0], abs=1e-9)
    np.testing.assert_allclose(up["forces"], down["forces"], atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("lmax,mmax", [(2, 2), (3, 1)])
def test_two_part_convolution_equals_one_on_concatenated_channels(lmax, mmax):
    """SO2Convolution(parts=2) on source and target blocks, its radial weights in the
    [m][part][l][channel] order that ``radial_order`` gives, equals the one-part convolution of
    the concatenated channels with the same weights and the radial weights in plain order; its
    first and second derivatives are right (gradcheck, gradgradcheck: training differentiates
    forces)."""
    from esen_flows.model.layers import (
        EdgeInputs,
        RadialMLP,
        SO2Convolution,
        truncated_layout,
    )

    torch.manual_seed(3)
    c, e, z = 3, 7, 4
    two = SO2Convolution(lmax, mmax, 2 * c, 4, extra=5, parts=2).double()
    one = SO2Convolution(lmax, mmax, 2 * c, 4, extra=5, parts=1).double()
    one.load_state_dict(two.state_dict())
    sizes = truncated_layout(lmax, mmax)[2]
    src = [torch.randn(e, n, c, dtype=torch.float64) for n in sizes]
    dst = [torch.randn(e, n, c, dtype=torch.float64) for n in sizes]
    mlp = RadialMLP([4 + 2 * 5, 6, 6, two.radial_size()]).double()
    ordered = RadialMLP([4 + 2 * 5, 6, 6, two.radial_size()], output_order=two.radial_order())
    ordered = ordered.double()
    ordered.load_state_dict(mlp.state_dict())
    edges = EdgeInputs(  # the path the model takes: per pair, both directions
        rbf=torch.randn(e, 4, dtype=torch.float64),
        zi=torch.randint(0, z, (e,)),
        zj=torch.randint(0, z, (e,)),
        source_table=torch.randn(z, 5, dtype=torch.float64),
        target_table=torch.randn(z, 5, dtype=torch.float64),
    )
    plain = mlp.forward_pairs(edges)  # (2e, radial_size)
    np.testing.assert_allclose(
        ordered.forward_pairs(edges).detach(), plain[:, two.radial_order()].detach(), atol=1e-14
    )
    both = [torch.cat([g, g.flip(0)]) for g in src], [torch.cat([g, g.flip(0)]) for g in dst]
    got, gates = two(list(both), ordered.forward_pairs(edges))
    concatenated = [torch.cat([s, d], dim=-1) for s, d in zip(*both, strict=True)]
    want, want_gates = one([concatenated], plain)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.detach(), b.detach(), atol=1e-12)
    np.testing.assert_allclose(gates.detach(), want_gates.detach(), atol=1e-12)
    # the radial weights as one product per (m, part) block, what the model passes: the same
    # numbers as the single product cut into blocks, and the same convolution
    blocks = ordered.forward_pairs_blocks(edges, two.radial_blocks())
    whole = torch.split(ordered.forward_pairs(edges), two.radial_blocks(), dim=1)
    assert len(blocks) == len(whole) == 2 * (mmax + 1)
    for a, b in zip(blocks, whole, strict=True):
        assert a.is_contiguous()
        np.testing.assert_allclose(a.detach(), b.detach(), atol=1e-14)
    got_blocks, gates_blocks = two(list(both), blocks)
    for a, b in zip(got_blocks, want, strict=True):
        np.testing.assert_allclose(a.detach(), b.detach(), atol=1e-12)
    np.testing.assert_allclose(gates_blocks.detach(), want_gates.detach(), atol=1e-12)
    with pytest.raises(ValueError, match="radial blocks must have the sizes"):
        two(list(both), blocks[:-1])

    def conv(*tensors):
        k = len(sizes)
        groups, gate = two([list(tensors[:k]), list(tensors[k : 2 * k])], tensors[-1])
        return (*groups, gate)

    inputs = (*(g.requires_grad_() for g in src), *(g.requires_grad_() for g in dst))
    radial = torch.randn(e, two.radial_size(), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (*inputs, radial))
    assert torch.autograd.gradgradcheck(conv, (*inputs, radial))
    with pytest.raises(ValueError, match="permutation"):
        RadialMLP([4, 6, 6, 3], output_order=[0, 0, 1])


def test_blocks_give_the_first_convolution_its_radial_order(model):
    for block in model.blocks:
        assert block.radial.output_order.tolist() == block.conv1.radial_order()


def _energy_every_direction_in_its_own_frame(model: ESEN, atoms: Atoms) -> float:
    """eSEN's energy computed the plain way: each of the 2P directions rotated into a frame
    built from its own direction (``edge_rotation(-d)`` for j <- i), four rotations per pair,
    the radial weights as one product. The model instead rotates both ends of a pair once and
    gets the reverse direction by the half turn's signs."""
    cfg = model.config
    data = AtomsBatch.from_atoms([atoms], dtype=torch.float64)
    pos, cell, batch, numbers = data.positions, data.cell, data.system, data.numbers
    graph = radius_graph_pbc(pos, cell, batch, cfg.cutoff).pairs()
    vec = edge_vectors(pos, cell, batch, graph)
    dist = vec.norm(dim=-1)
    direction = torch.cat([vec, -vec]) / dist.repeat(2)[:, None]
    rot_out = model._truncated_wigner(edge_rotation(direction))  # (2P, K, Kt), own frames
    rot_in = rot_out.transpose(1, 2)
    rot_out_env = (
        rot_out * polynomial_envelope(dist / cfg.cutoff, cfg.envelope_p).repeat(2)[:, None, None]
    )
    source, target = torch.cat([graph.src, graph.dst]), torch.cat([graph.dst, graph.src])
    species = numbers - 1
    edges = EdgeInputs(
        rbf=model.rbf(dist),
        zi=species[graph.dst],
        zj=species[graph.src],
        source_table=model.source_embedding.weight,
        target_table=model.target_embedding.weight,
    )
    x = pos.new_zeros(len(pos), model.num_coefficients, cfg.channels)
    x[:, 0] = model.node_embedding(species)
    m0 = model.degree_mlp.forward_pairs(edges).view(-1, cfg.lmax + 1, cfg.channels)
    x = x.index_add(
        0, target, torch.bmm(rot_out_env[:, :, : cfg.lmax + 1], m0 / cfg.degree_normalization)
    )
    for block in model.blocks:
        h = block.norm_edge(x)
        parts = [
            list(torch.split(torch.bmm(rot_in, h[index]), model.group_sizes, dim=1))
            for index in (source, target)
        ]
        groups, gates = block.conv1(parts, block.radial.forward_pairs(edges))
        groups, _ = block.conv2([gate_groups(groups, gates, cfg.lmax, cfg.mmax)])
        x = x.index_add(0, target, torch.bmm(rot_out_env, torch.cat(groups, dim=1)))
        x = x + block.ffn(block.norm_node(x))
    atom_e = model.energy_head(model.norm_final(x)[:, 0]).squeeze(-1)
    return float(atom_e.sum() + model.element_energies[numbers].sum())


def test_reverse_direction_by_signs_equals_its_own_frame(model):
    """The pair trick (one rotation per end, the reverse frame as a sign per coefficient)
    gives the energy of rotating every direction in a frame built from that direction, on a
    distorted quaternary cell with edges in every octant (both charts of the frame)."""
    a = alloy(11, repeat=(2, 2, 1))
    with torch.no_grad():
        want = _energy_every_direction_in_its_own_frame(model, a)
    assert energy(model, a) == pytest.approx(want, abs=1e-10)
    # and the comparison can fail: without the signs the model's energy is another one
    signs = model.flip_sign.clone()
    try:
        model.flip_sign.fill_(1.0)
        assert abs(energy(model, a) - want) > 1e-6
    finally:
        model.flip_sign.copy_(signs)
    assert energy(model, a) == pytest.approx(want, abs=1e-10)
