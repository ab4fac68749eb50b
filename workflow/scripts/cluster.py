"""k-means clusters of one app's samples on one feature set."""

from packd.joblog import logged_job
from packd.stages.data import cluster

with logged_job(snakemake.log[0], "cluster") as log:
    cluster(
        split_paths={split: snakemake.input[split] for split in ("train", "val", "test")},
        features=snakemake.wildcards.features,
        k=int(snakemake.wildcards.k),
        seed=snakemake.params.seed,
        n_init=snakemake.params.n_init,
        min_cluster_fraction=snakemake.params.min_cluster_fraction,
        assignments_path=snakemake.output.assignments,
        centroids_path=snakemake.output.centroids,
        sizes_path=snakemake.output.sizes,
        figure_path=snakemake.output.figure,
        log=log,
    )
