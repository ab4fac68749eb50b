"""F1 differences between methods, tested with the seed as the unit of replication, and the
seed-to-seed spread of those differences."""

import pandas as pd

from packd.atomic import write_text_atomic
from packd.joblog import logged_job
from packd.tables import seed_noise_table, significance_table, to_markdown

with logged_job(snakemake.log[0], "table_significance") as log:
    main = pd.read_csv(snakemake.input.main)
    significance = significance_table(main)
    try:
        noise = seed_noise_table(main)
    except ValueError as error:  # one seed: nothing to spread
        noise = pd.DataFrame({"note": [str(error)]})
    outputs = snakemake.output
    for frame, csv, markdown in (
        (significance, outputs.csv, outputs.md),
        (noise, outputs.noise_csv, outputs.noise_md),
    ):
        write_text_atomic(csv, frame.to_csv(index=False))
        write_text_atomic(markdown, to_markdown(frame))
    log.info("\n%s\n\n%s", to_markdown(significance), to_markdown(noise))
