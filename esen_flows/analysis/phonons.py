"""Phonon plots: band structure beside the density of states.

The phonon properties themselves (mesh, DOS, thermal properties, band structure, dynamic
stability) are computed in ``esen_flows.dynamics.phonon_properties``; their names are
re-exported here for scripts that imported them from this module.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine
from pymatgen.phonon.dos import PhononDos

from esen_flows.analysis.report_plots import pyplot
from esen_flows.dynamics.phonon_properties import (  # noqa: F401 - re-exported (moved)
    DEFAULT_MESH,
    GAMMA_ACOUSTIC_TOLERANCE,
    Stability,
    band_path_qpoints,
    band_structure,
    dynamic_stability,
    run_mesh,
    thermal_properties,
    total_dos,
)


def plot_phonons(
    bs: PhononBandStructureSymmLine | None, dos: PhononDos | None, title: str = ""
) -> Figure:
    """Band structure (left) and DOS (right, sharing the frequency axis), THz; imaginary
    frequencies are negative."""
    from pymatgen.phonon.plotter import PhononBSPlotter

    plt = pyplot()
    fig, (ax_bs, ax_dos) = plt.subplots(
        1, 2, figsize=(7.5, 4.0), sharey=True, gridspec_kw={"width_ratios": [3, 1]}
    )
    if bs is not None:
        data = PhononBSPlotter(bs).bs_plot_data()
        for dist, freq in zip(data["distances"], data["frequency"], strict=True):
            for band in np.asarray(freq):
                ax_bs.plot(dist, band, color="tab:blue", lw=1.0)
        ticks, tick_labels = [], []
        for d, name in zip(data["ticks"]["distance"], data["ticks"]["label"], strict=True):
            name = "$\\Gamma$" if name in ("\\Gamma", "$\\Gamma$") else name
            if ticks and abs(d - ticks[-1]) < 1e-8:
                if name != tick_labels[-1]:
                    tick_labels[-1] = f"{tick_labels[-1]}|{name}"
                continue
            ticks.append(d)
            tick_labels.append(name)
        ax_bs.set_xticks(ticks, tick_labels)
        for d in ticks:
            ax_bs.axvline(d, color="0.7", lw=0.6)
        ax_bs.set_xlim(ticks[0], ticks[-1])
    ax_bs.axhline(0.0, color="0.3", lw=0.6, ls="--")
    ax_bs.set_ylabel("Frequency (THz)")
    if dos is not None:
        ax_dos.plot(dos.densities, dos.frequencies, color="tab:red", lw=1.0)
        ax_dos.set_xlim(left=0.0)
    ax_dos.set_xlabel("DOS (states/THz)")
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig
