"""Keep the learning-rate candidate with the best validation F1 (a whole-app teacher's or any
trained method's)."""

from packd.joblog import logged_job
from packd.stages.training import select_candidate

with logged_job(snakemake.log[0], "select_candidate") as log:
    select_candidate(
        candidate_paths=list(snakemake.input.candidates),
        factors=snakemake.params.factors,
        checkpoint_path=snakemake.output.checkpoint,
        selection_path=snakemake.output.selection,
        log=log,
    )
