from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the default demo instead of being merged into it, so
# that its `apps` are the only apps (Snakemake would otherwise merge the two app lists).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/traces.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/students.smk"
include: "workflow/rules/blockwise.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/paper.smk"
include: "workflow/rules/prefetch.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
