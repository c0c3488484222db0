"""keskar_repro: Keskar et al. 2017 (large batches, sharp minima) on MNIST MLPs, in JAX."""

__version__ = "0.1.0"
