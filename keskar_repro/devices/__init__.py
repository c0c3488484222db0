"""Devices: data parallelism over local devices (`parallel`), multi-process jobs
(`distributed`, `launch`) and device-memory budgets (`memory`)."""
