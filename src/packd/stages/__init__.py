"""One function per workflow rule, in one module per stage: read inputs, call the package, write
outputs atomically.

The scripts under workflow/scripts only unpack the `snakemake` object and call these, so every
stage can be run and tested without Snakemake. The domain logic lives in the modules that own it
(dataset, clustering, train, metrics, ...); a stage function only wires files to it.
"""
