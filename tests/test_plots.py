"""keskar_repro.report.plots: figures are written atomically, with a plain file's permissions."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from keskar_repro.report.plots import save_figure  # noqa: E402


def test_save_figure_writes_png_and_pdf_with_the_umask_mode_and_no_temporary(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    old = os.umask(0o027)
    try:
        paths = save_figure(fig, str(tmp_path / "fig"))
    finally:
        os.umask(old)
    assert paths == [str(tmp_path / "fig.png"), str(tmp_path / "fig.pdf")]
    assert sorted(os.listdir(tmp_path)) == ["fig.pdf", "fig.png"]
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    assert {(tmp_path / p).stat().st_mode & 0o777 for p in ("fig.png", "fig.pdf")} == {0o640}
