"""benchmarks/: one option name per setting, as in the figure scripts (--dataset), with the older
--data spelling of committed commands still accepted."""

import argparse

import pytest

from benchmarks.common import add_dataset_option


@pytest.mark.parametrize("flag", ["--dataset", "--data"])
def test_dataset_option_has_one_name_and_keeps_the_old_spelling(flag):
    parser = argparse.ArgumentParser()
    add_dataset_option(parser)
    assert vars(parser.parse_args([flag, "random"])) == {"dataset": "random"}
    assert parser.parse_args([]).dataset == "fashion_mnist"


@pytest.mark.parametrize("batch", [256, 6000])
def test_the_gemms_of_a_step_are_its_flops(batch):
    """The real bound's products (benchmarks/gemm_bound.py) add up to the FLOPs of one step."""
    from benchmarks.gemm_bound import f1_step_gemms, step_flops
    from keskar_repro.training.models import f1, train_step_flops_per_example

    gemms = f1_step_gemms(batch)
    assert step_flops(gemms) == batch * train_step_flops_per_example(f1())
    assert sum(c for *_, t, c in gemms if t == "b") == 5  # no input gradient for the images


def _mlp_loss(widths, batch_norm: bool):
    """Mean log-sum-exp of a ReLU MLP's outputs over 6 examples (a loss that, like the
    cross-entropy, needs the last layer's output for its gradient), with batch norm (no scale)
    or without."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((6, widths[0]))

    def loss(ws):
        h = x
        for w in ws[:-1]:
            h = h @ w
            if batch_norm:
                h = (h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-3)
            h = jax.nn.relu(h)
        return jnp.mean(jax.nn.logsumexp(h @ ws[-1], axis=1))

    ws = [jnp.ones((a, b)) / a for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return loss, ws


def test_gemms_of_reads_a_gradient_and_an_hvp_from_the_jaxpr():
    """`gemms_of`: a gradient has 3 products per layer but the first (2); forward over reverse,
    after jit's dead-code elimination, 8 per layer but the first (3), one fewer without batch
    norm (the primal input gradient of the second layer then feeds nothing)."""
    import jax

    from benchmarks.gemm_bound import gemms_of, step_flops

    widths = (5, 4, 3, 2)
    f = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    d01, d12 = widths[0] * widths[1], widths[1] * widths[2]
    for batch_norm in (True, False):
        loss, ws = _mlp_loss(widths, batch_norm)
        grad = jax.grad(loss)
        assert step_flops(gemms_of(grad, ws)) == 2 * 6 * (3 * f - d01)

        def hvp(v, loss=loss, ws=ws):
            return jax.jvp(jax.grad(loss), (ws,), (v,))[1]

        expected = 8 * f - 5 * d01 - (0 if batch_norm else d12)
        assert step_flops(gemms_of(hvp, ws)) == 2 * 6 * expected
    scanned = jax.jit(lambda ws: jax.lax.scan(lambda c, _: (c + loss(ws), None), 0.0, None, 4)[0])
    assert step_flops(gemms_of(scanned, ws)) == 4 * 2 * 6 * f  # a scan's body, `length` times


def _readme_table(header: str) -> list[str]:
    """The body rows of the table of benchmarks/README.md whose header line begins `header`."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "benchmarks" / "README.md").read_text()
    return readme[readme.index(header) :].split("\n\n")[0].splitlines()[2:]


def _cells(line: str) -> list[str]:
    """A table row's cells after the first (its label), stripped."""
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_the_step_profile_table_is_its_json():
    """benchmarks/README.md's epoch profile: every cell from the two committed runs' JSON."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    first, second = (
        {r["batch_size"]: r for r in json.loads((root / name).read_text())["results"]}
        for name in ("step_profile_cpu.json", "step_profile_256_second_cpu.json")
    )
    table = _readme_table("| epoch | batch 256, s |")
    for line, i in zip(table, range(5), strict=False):
        a, b, c = first[256]["rows"][i], second[256]["rows"][i], first[6000]["rows"][i]

        def ratio(r, run):
            return r["seconds"] / run["real_bound_seconds"]

        assert _cells(line) == [
            f"{a['seconds']:.2f} ({b['seconds']:.2f})",
            f"{ratio(a, first[256]):.2f} ({ratio(b, second[256]):.2f})",
            f"{c['seconds']:.2f}",
            f"{ratio(c, first[6000]):.2f}",
        ], line
    assert table[5].split("|")[2].strip() == (
        f"{first[256]['real_bound_seconds']:.2f} ({second[256]['real_bound_seconds']:.2f})"
    )


def test_the_hvp_table_is_its_json():
    """benchmarks/README.md's one-HVP comparison: every cell from hvp_peers_cpu.json."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    hvp = json.loads((root / "hvp_peers_cpu.json").read_text())["hvp"]
    table = _readme_table("| model | ours s | PyTorch")
    for line, name in zip(table, ("mlp", "f1"), strict=True):
        h, ours_note = hvp[name], " ours" if name == "mlp" else ""  # said once, in the first row
        ours, torch, bound = h["seconds"], h["torch_seconds"], h["real_bound"]["bound_seconds"]
        assert _cells(line) == [
            f"{ours:.3f}",
            f"{torch['double backward']:.3f} ({torch['double backward'] / ours:.2f}x{ours_note})",
            f"{torch['torch.func']:.3f} ({torch['torch.func'] / ours:.2f}x)",
            f"{bound['best']:.3f}",
            f"{ours / bound['best']:.2f}",
            f"{bound['jax']:.3f}",
        ], line
