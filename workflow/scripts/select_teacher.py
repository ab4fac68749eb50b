"""Keep the whole-app teacher candidate with the best validation F1."""

from packd.joblog import logged_job
from packd.stages.training import select_teacher

with logged_job(snakemake.log[0], "select_teacher") as log:
    select_teacher(
        candidate_paths=list(snakemake.input.candidates),
        factors=snakemake.params.factors,
        checkpoint_path=snakemake.output.checkpoint,
        selection_path=snakemake.output.selection,
        log=log,
    )
