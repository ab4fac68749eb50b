"""The main table (long form), its summary over seeds, the teacher-ceiling check and the teachers'
learning-rate choice."""

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import (
    ceiling_table,
    main_summary,
    main_table,
    read_metrics,
    selection_table,
    to_markdown,
)

with logged_job(snakemake.log[0], "table_main") as log:
    table = main_table(read_metrics(snakemake.input.metrics))
    summary = main_summary(table)
    ceiling = ceiling_table(table)
    selection = selection_table(snakemake.input.selections)
    outputs = snakemake.output
    for frame, csv, markdown in (
        (table, outputs.main_csv, outputs.main_md),
        (summary, outputs.summary_csv, outputs.summary_md),
        (ceiling, outputs.ceiling_csv, outputs.ceiling_md),
        (selection, outputs.selection_csv, outputs.selection_md),
    ):
        write_text_atomic(csv, frame.to_csv(index=False))
        write_text_atomic(markdown, to_markdown(frame))
    log.info("\n%s", to_markdown(summary))
    failed = ceiling[~ceiling["teacher_is_ceiling"]] if len(ceiling) else ceiling
    for row in failed.itertuples():
        log.warning(
            "TEACHER IS NOT THE CEILING: seed %s, %s/%s: the teacher's validation F1 is not "
            "above %s (see results/tables/ceiling.md)",
            row.seed,
            row.app,
            row.arch,
            row.teacher_not_above,
        )
