# Cluster: k-means on one feature set of the training samples; every sample of every split gets
# the cluster of its nearest centroid, computed from the same features. The centroids (with the
# train quantiles that scale the features) are saved, so the prefetch replay routes its stream's
# samples with the same model instead of fitting it again.


rule cluster:
    input:
        unpack(get_dataset_splits),
    output:
        assignments="results/clusters/seed{seed}/{app}/{features}-k{k}.parquet",
        centroids="results/clusters/seed{seed}/{app}/{features}-k{k}.centroids.json",
        sizes="results/clusters/seed{seed}/{app}/{features}-k{k}.sizes.csv",
        figure=report(
            "results/clusters/seed{seed}/{app}/{features}-k{k}.png",
            caption="../report/cluster_figure.rst",
            category="2. Clusters",
            subcategory="{app}",
        ),
    log:
        "logs/cluster/seed{seed}/cluster-{app}-{features}-k{k}.log",
    benchmark:
        "benchmarks/cluster/seed{seed}/cluster-{app}-{features}-k{k}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        seed=get_seed,
        n_init=config["cluster"]["n_init"],
        min_cluster_fraction=config["cluster"]["min_cluster_fraction"],
    script:
        "../scripts/cluster.py"
