"""Training F1: the models, batch-norm policies, the exact full-split objective, the compiled
training loop, the paper's protocol, function-preserving reparametrisations and the 1-D paths
between minimizers. Imports the data and devices layers, nothing above."""
