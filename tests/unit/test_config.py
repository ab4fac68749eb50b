"""Config validation: the schema and the cross-key checks stop a bad config, naming the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from packd.config import (
    ConfigError,
    check_config,
    validate_config,
    with_schema_defaults,
)
from tests.conftest import REPO, SCHEMA


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def validation_error(config: dict) -> str:
    """The message validate_config raises for config; fails the test if it raises none."""
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA, REPO)
    return str(error.value)


def config_text_with(old: str, new: str) -> str:
    """config.yaml's text with one line changed, as a user would edit it."""
    text = (REPO / "config.yaml").read_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "name",
    [
        "config.yaml",
        "config/paper.yaml",
        "tests/configs/tiny.yaml",
        "tests/configs/tiny_traces.yaml",
    ],
)
def test_shipped_configs_are_valid(name: str) -> None:
    config = load(name)
    validate_config(config, SCHEMA, REPO)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c.update(colour="blue"), "colour: unknown key"),
        (lambda c: c["train"]["teacher"].update(epochs="ten"), "train.teacher.epochs: expected"),
        (lambda c: c["train"]["teacher"].update(epochs=0), "train.teacher.epochs: 0 is less"),
        (lambda c: c["cluster"].update(features="x"), "cluster.features: 'x' is not one of"),
        (lambda c: c["apps"]["bc"].update(kernel="dfs"), "apps.bc.kernel: 'dfs' is not one of"),
        (lambda c: c["apps"]["bc"].update(scale=40), "apps.bc.scale: 40 is greater"),
        (lambda c: c["kd"]["packd"].update(alpha=1.5), "kd.packd.alpha: 1.5 is greater"),
        (lambda c: c["tracing"].update(backend="pin"), "tracing.backend: 'pin' is not one of"),
        (lambda c: c["dataset"]["split"].update(val=0), "dataset.split.val: 0 is less"),
        (lambda c: c.update(archs=["lstm", "transformer"]), "archs[1]: 'transformer' is not"),
        (lambda c: c["cache"]["levels"][1].update(ways="8 ways"), "cache.levels[1].ways"),
        (
            lambda c: c["train"]["lr_by_arch"].update(gpt={"student": 0.1}),
            "train.lr_by_arch: key 'gpt' is not one of lstm, mixer, resnet",
        ),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "zero-epochs",
        "bad-features",
        "bad-kernel",
        "huge-scale",
        "alpha-above-1",
        "bad-backend",
        "zero-val",
        "unknown-arch",
        "text-in-list-item",
        "unknown-arch-key",
    ],
)
def test_schema_rejects_bad_values_naming_the_key(change, named: str) -> None:
    config = copy.deepcopy(load("config.yaml"))
    change(config)
    message = validation_error(config)
    assert named in message
    assert len(message.splitlines()) == 2  # the count, then the one problem


def test_misspelt_top_level_key_is_named_with_the_right_one() -> None:
    config = yaml.safe_load(config_text_with("\nseed: 1\n", "\nsede: 1\n"))
    message = validation_error(config)
    assert len(message.splitlines()) < 10
    assert "sede: unknown key; did you mean 'seed'?" in message
    assert "seed: missing" in message


def test_unknown_key_without_a_near_one_lists_the_valid_keys() -> None:
    config = load("config.yaml")
    config["train"]["teacher"]["warmup_steps"] = 100
    message = validation_error(config)
    assert "train.teacher.warmup_steps: unknown key; valid keys: epochs, lr," in message


def test_many_problems_are_cut_to_a_few_lines() -> None:
    config = load("config.yaml")
    config.update({f"extra_{index}": index for index in range(20)})
    message = validation_error(config)
    assert message.startswith("invalid config (20 problems):")
    assert message.splitlines()[-1] == "  ... and 15 more"
    assert len(message.splitlines()) == 7


def test_numbers_yaml_reads_as_text_become_numbers() -> None:
    text = config_text_with("lr: 0.005,", "lr: 5e-3,")
    text = text.replace("max_loads: 6000000", "max_loads: 6e+6").replace("seed: 1\n", "seed: 1E0\n")
    config = yaml.safe_load(text)
    assert config["train"]["student"]["lr"] == "5e-3"  # YAML 1.1: no dot, so not a float
    validate_config(config, SCHEMA, REPO)
    assert config["train"]["student"]["lr"] == 0.005
    assert config["tracing"]["max_loads"] == 6_000_000
    assert isinstance(config["tracing"]["max_loads"], int)
    assert config["seed"] == 1 and isinstance(config["seed"], int)


def test_true_and_false_text_become_booleans_where_the_schema_wants_one() -> None:
    config = load("config.yaml")
    # What Snakemake's `--config 'sweeps={run: false}'` gives: the values inside stay text
    config["sweeps"]["run"] = "false"
    config["kd"]["scale_soft_by_t2"] = "True"
    validate_config(config, SCHEMA, REPO)
    assert config["sweeps"]["run"] is False and config["kd"]["scale_soft_by_t2"] is True
    config["sweeps"]["run"] = "no"  # YAML 1.1's other spellings are not guessed at
    assert "sweeps.run: expected true or false, got the text 'no'" in validation_error(config)


def test_number_text_stays_text_where_the_schema_wants_no_number() -> None:
    config = load("config.yaml")
    config["apps"]["ls"] = {"command": "1e3", "backend": "lackey"}
    config["train"]["teacher"]["epochs"] = "2.5e0"  # not a whole number: an integer is wanted
    message = validation_error(config)
    assert config["apps"]["ls"]["command"] == "1e3"
    assert "train.teacher.epochs: expected an integer, got the text '2.5e0'" in message


def test_defaults_fill_missing_keys_without_sharing_the_schema_lists() -> None:
    first, second = load("config.yaml"), load("config.yaml")
    for config in (first, second):
        del config["dataset"]["history"], config["cache"]["line_bytes"], config["sweeps"]["k"]
        validate_config(config, SCHEMA, REPO)
    assert first["dataset"]["history"] == 10
    assert first["cache"]["line_bytes"] == 64
    assert first["sweeps"]["k"] == [2, 3, 4]
    first["sweeps"]["k"].append(5)
    assert second["sweeps"]["k"] == [2, 3, 4]


def test_app_with_two_kind_keys_names_both() -> None:
    config = load("config.yaml")
    config["apps"]["bc"]["import"] = "tests/data/bfs-uniform-s13.load_trace.txt.xz"
    message = validation_error(config)
    assert (
        "apps.bc: has both 'kernel' and 'import'; "
        "an entry of apps has exactly one of kernel, command, import"
    ) in message


def test_error_inside_an_app_source_names_the_key() -> None:
    config = yaml.safe_load(
        config_text_with(
            "apps:\n",
            "apps:\n  mine: {command: ./mine, backend: lackey, env: {OMP_NUM_THREADS: 1}}\n",
        )
    )
    message = validation_error(config)
    assert "apps.mine.env.OMP_NUM_THREADS: expected a string, got the integer 1" in message
    assert len(message.splitlines()) == 2


def test_app_without_a_kind_key_suggests_the_misspelt_one() -> None:
    config = load("config.yaml")
    config["apps"]["bc"]["kernal"] = config["apps"]["bc"].pop("kernel")
    message = validation_error(config)
    assert "apps.bc: an entry of apps has exactly one of kernel, command, import" in message
    assert "'kernal': did you mean 'kernel'?" in message


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("history", 12, "dataset.history: must be 10, got 12"),
        ("delta_bound", 64, "dataset.delta_bound: must be 128, got 64"),
        ("look_forward", 0, "dataset.look_forward: 0 is less than the minimum of 1"),
    ],
)
def test_dataset_shape_the_models_cannot_take_is_rejected(key: str, value: int, named: str) -> None:
    config = load("config.yaml")
    config["dataset"][key] = value
    assert named in validation_error(config)


def test_schema_dataset_shape_is_the_models_shape() -> None:
    from packd.models import HISTORY, OUTPUTS

    dataset = yaml.safe_load(SCHEMA.read_text())["properties"]["dataset"]["properties"]
    assert dataset["history"]["const"] == dataset["history"]["default"] == HISTORY
    assert 2 * dataset["delta_bound"]["const"] == 2 * dataset["delta_bound"]["default"] == OUTPUTS


def test_split_must_leave_a_test_part() -> None:
    config = load("config.yaml")
    config["dataset"]["split"].update(warmup=0.3, train=0.7)
    with pytest.raises(ConfigError, match="dataset.split"):
        check_config(config, base_dir=REPO)


def test_cache_level_must_have_power_of_two_sets() -> None:
    config = load("config.yaml")
    config["cache"]["levels"][1]["size_kib"] = 500
    with pytest.raises(ConfigError, match=r"cache.levels\[1\] \(L2\)"):
        check_config(config, base_dir=REPO)


def test_missing_import_file_is_named(tmp_path: Path) -> None:
    config = load("config.yaml")
    config["apps"]["mine"] = {"import": "traces/mine.txt.xz"}
    with pytest.raises(ConfigError, match=r"apps.mine.import: no such file: traces/mine.txt.xz"):
        validate_config(config, SCHEMA, base_dir=tmp_path)


def test_arch_without_sizes_is_named() -> None:
    config = load("config.yaml")
    config["archs"] = ["lstm", "mixer", "resnet"]
    del config["models"]["mixer"]
    with pytest.raises(ConfigError, match="models.mixer"):
        check_config(config, base_dir=REPO)


# One home for a default: the schema. validate_config fills its defaults in, so that the rules
# and the package read every setting with a plain lookup and never keep a second value.
SCHEMA_READERS = [
    REPO / "Snakefile",
    *sorted((REPO / "workflow/rules").glob("*.smk")),
    *sorted((REPO / "workflow/scripts").glob("*.py")),
    *sorted((REPO / "src/packd").rglob("*.py")),
]
# `.get(<key>, <fallback>)`: the fallback is a second home for the key's default
GET_WITH_FALLBACK = re.compile(
    r"""\.get\(\s*["'](?P<key>\w+)["']\s*,\s*(?P<fallback>[^)\s][^)]*)\)"""
)
# `.get(...)` calls that read no config section, where a key shares a setting's name
NOT_CONFIG_READS = {
    # checkpoint headers: a training history, the device a model trained on
    ("src/packd/stages/evaluation.py", "history"),
    ("src/packd/stages/evaluation.py", "device"),
    # a replacement size (packd.plan.replacement_size_of gives both keys): for a direct caller,
    # one teacher layer per block
    ("src/packd/blockwise/replacements.py", "layers_per_block"),
}


def _resolved(subschema: dict, schema: dict) -> dict:
    """A subschema with its local $ref followed (its own keys beside it win)."""
    ref = subschema.get("$ref", "")
    if not ref.startswith("#/"):
        return subschema
    target = schema
    for part in ref[2:].split("/"):
        target = target[part]
    return {**target, **{key: value for key, value in subschema.items() if key != "$ref"}}


def _defaults(subschema: dict, schema: dict, path: tuple = ()):
    """(path, default) of every property with a default, through nested properties and list
    items ("[]" in the path: each item)."""
    subschema = _resolved(subschema, schema)
    if isinstance(subschema.get("items"), dict):
        yield from _defaults(subschema["items"], schema, (*path, "[]"))
    for key, property_schema in subschema.get("properties", {}).items():
        property_schema = _resolved(property_schema, schema)
        if "default" in property_schema:
            yield (*path, key), property_schema["default"]
        yield from _defaults(property_schema, schema, (*path, key))


def _values_at(value, path: tuple):
    """The values at a path of _defaults in a config (one per list item); fails if one is
    missing."""
    if not path:
        yield value
        return
    key, *rest = path
    if key == "[]":
        for item in value:
            yield from _values_at(item, tuple(rest))
        return
    assert key in value, f"{key}: not filled in"
    yield from _values_at(value[key], tuple(rest))


def test_validation_fills_every_schema_default_so_a_plain_lookup_finds_it() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    config = load("tests/configs/tiny.yaml")
    # Every optional section left out: the schema alone supplies it
    for section in ("blockwise", "frontier", "evaluate"):
        config.pop(section, None)
    config["evaluate"] = {}
    validate_config(config, SCHEMA, REPO)
    for path, default in _defaults(schema, schema):
        values = list(_values_at(config, path))
        if path[0] in ("blockwise", "frontier", "evaluate") and not isinstance(default, dict):
            assert values == [default], ".".join(path)


def test_no_rule_reads_a_config_value_with_a_fallback() -> None:
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.search(r"config\b.*\.get\([^)]*,", line), f"{path.name}:{number}: {line}"


def test_a_schema_default_has_no_second_home_in_the_rules_scripts_or_package() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = {path[-1] for path, _ in _defaults(schema, schema)}
    second_homes = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in SCHEMA_READERS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for match in GET_WITH_FALLBACK.finditer(line)
        if match["key"] in keys
        and match["fallback"].strip() != "None"
        and (str(path.relative_to(REPO)), match["key"]) not in NOT_CONFIG_READS
    ]
    assert not second_homes, "defaults belong in the schema alone:\n" + "\n".join(second_homes)


def test_the_replays_constants_are_the_schemas_defaults() -> None:
    """packd.plan's constants are library defaults for direct callers; the rules pass the
    config's values. They must not disagree with the schema's defaults."""
    from packd.plan import DEFAULT_DEGREE, DEFAULT_FILTER_WINDOW

    evaluate = yaml.safe_load(SCHEMA.read_text())["properties"]["evaluate"]["properties"]
    assert evaluate["prefetch_degree"]["default"] == DEFAULT_DEGREE
    assert evaluate["prefetch_filter_window"]["default"] == DEFAULT_FILTER_WINDOW


def test_a_hand_written_section_takes_the_schemas_defaults() -> None:
    train = with_schema_defaults(
        "train", {"teacher": {"epochs": 1, "lr": 0.1, "batch_size": 8, "patience": 1},
                  "student": {"epochs": 1, "lr": 0.1, "batch_size": 8, "patience": 1}}, SCHEMA
    )  # fmt: skip
    assert train["teacher"]["min_epochs"] == 1 and train["teacher"]["schedule"] == "constant"
    assert train["device"] == "auto" and train["cluster_teachers"]["epochs"] == 4
    with pytest.raises(ConfigError, match="invalid train section: teacher.epochs"):
        with_schema_defaults(
            "train", {**train, "teacher": {**train["teacher"], "epochs": 0}}, SCHEMA
        )
