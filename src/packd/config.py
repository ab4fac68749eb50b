"""Config validation (schema, then checks across keys) with short messages, and student methods.

Snakemake's `validate` reports a schema error with the whole schema and config (hundreds of
lines); `validate_config` reports each problem on one line that names the key.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import validators
from jsonschema.exceptions import ValidationError, best_match

# YAML 1.1 (PyYAML, so Snakemake) reads 5e-3 and 1.0e4 as text: its floats need a dot and a
# signed exponent (5.0e-3). Such text becomes a number where the schema wants one. Snakemake's
# --config leaves the values inside a mapping as text (`sweeps={run: false}`): true and false
# become booleans where the schema wants one.
NUMBER_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
INTEGER_TEXT = re.compile(r"[-+]?\d+")
BOOLEAN_TEXTS = {"true": True, "false": False}
MAX_REPORTED_PROBLEMS = 5
TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "null",
}


class ConfigError(ValueError):
    """A config value that is wrong or impossible; the message names the key."""


def validate_config(
    config: dict[str, Any], schema_path: str | Path, base_dir: Path | None = None
) -> None:
    """Check config against the schema, then across keys; raise ConfigError naming each bad key.

    Changes config in place, as snakemake.utils.validate does: the schema's defaults fill missing
    keys, and numbers YAML 1.1 left as text (5e-3) become numbers where the schema wants one, as
    do true and false where it wants a boolean.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _validator_with_defaults(schema)
    _convert_scalar_texts(config, list(validator.iter_errors(config)), schema)
    problems = _describe_all(validator.iter_errors(config), schema)
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        raise ConfigError(f"invalid config ({count}):\n" + "\n".join(f"  {p}" for p in shown))
    check_config(config, base_dir)


def with_schema_defaults(
    section: str, values: Mapping[str, Any], schema_path: str | Path
) -> dict[str, Any]:
    """A copy of one config section (e.g. "train") with the schema's defaults filled in, as
    validate_config fills them: for a section written by hand (tests, benchmarks)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    # The section's schema, beside the definitions its $refs name
    section_schema = {
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        **schema["properties"][section],
    }
    filled = copy.deepcopy(dict(values))
    problems = _describe_all(
        _validator_with_defaults(section_schema).iter_errors(filled), section_schema
    )
    if problems:
        raise ConfigError(f"invalid {section} section: " + "; ".join(problems))
    return filled


def _validator_with_defaults(schema: dict[str, Any]) -> Any:
    """A validator of the schema's draft that fills in `default:` values, as Snakemake's does."""
    draft = validators.validator_for(schema)
    validate_properties = draft.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if validator.is_type(instance, "object"):
            for key, property_schema in properties.items():
                if "default" in property_schema:
                    # A copy, so that no config shares (and can change) the schema's lists
                    instance.setdefault(key, copy.deepcopy(property_schema["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    return validators.extend(draft, {"properties": set_defaults})(schema)


def _convert_scalar_texts(
    config: dict[str, Any], errors: Iterable[ValidationError], schema: Mapping[str, Any]
) -> None:
    """Replace text that spells a number or a boolean where the schema wants one."""
    for error in _leaf_errors(errors, schema):
        if error.validator != "type" or not isinstance(error.instance, str):
            continue
        types = _as_list(error.validator_value)
        text = error.instance.strip()
        value: Any = _number_from_text(text, types)
        if value is None and "boolean" in types:
            value = BOOLEAN_TEXTS.get(text.lower())
        if value is not None and error.absolute_path:
            *parents, key = error.absolute_path
            container: Any = config
            for parent in parents:
                container = container[parent]
            container[key] = value


def _number_from_text(text: str, types: list[str]) -> int | float | None:
    """The number that `text` spells, of one of `types` (integer, number), or None."""
    if not NUMBER_TEXT.fullmatch(text):
        return None
    if "integer" in types and INTEGER_TEXT.fullmatch(text):
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        return None
    if "number" in types:
        return value
    if "integer" in types and value.is_integer():
        return int(value)
    return None


def _leaf_errors(
    errors: Iterable[ValidationError], schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """The errors to report: a oneOf/anyOf error gives way to those of the branch it meant.

    Branches whose first required keys differ (an app's kernel, command or import) are told
    apart by that key; other oneOf/anyOf errors give way to jsonschema's best match.
    """
    for error in errors:
        if error.validator not in ("oneOf", "anyOf") or not error.context:
            yield error
            continue
        kinds = _branch_kinds(error.validator_value, schema)
        if kinds is None:
            yield from _leaf_errors([best_match(error.context)], schema)
            continue
        present = _kinds_present(kinds, error.instance)
        branch = kinds.index(present[0]) if len(present) == 1 else None
        branch_errors = [e for e in error.context if e.relative_schema_path[0] == branch]
        yield from _leaf_errors(branch_errors, schema) if branch_errors else [error]


def _branch_kinds(branches: list[Any], schema: Mapping[str, Any]) -> list[str] | None:
    """Each branch's first required key (e.g. kernel, command, import); None if not distinct."""
    kinds = []
    for branch in branches:
        required = _resolve_local_ref(branch, schema).get("required")
        if not required:
            return None
        kinds.append(required[0])
    return kinds if len(set(kinds)) == len(kinds) else None


def _kinds_present(kinds: list[str], instance: Any) -> list[str]:
    """The kind keys that a mapping has."""
    return [kind for kind in kinds if isinstance(instance, dict) and kind in instance]


def _resolve_local_ref(subschema: Any, schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The subschema, its `#/...` $ref followed inside the schema file."""
    if not isinstance(subschema, dict):
        return {}
    ref = subschema.get("$ref", "")
    if not ref.startswith("#/"):
        return subschema
    target: Any = schema
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def _describe_all(errors: Iterable[ValidationError], schema: Mapping[str, Any]) -> list[str]:
    """One line per problem, in schema order, without repeats."""
    lines: list[str] = []
    for error in _leaf_errors(errors, schema):
        lines.extend(line for line in _describe(error, schema) if line not in lines)
    return lines


def _describe(error: ValidationError, schema: Mapping[str, Any]) -> list[str]:
    """Lines that name the key of one error and say what is wrong with it."""
    path, instance = list(error.absolute_path), error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        return [
            f"{_key_path([*path, key])}: unknown key; {_suggestion(key, known, or_list=True)}"
            for key in instance
            if key not in known
        ]
    if error.validator == "required" and isinstance(instance, dict):
        missing = [key for key in error.validator_value if key not in instance]
        return [f"{_key_path([*path, key])}: missing" for key in missing]
    if error.validator in ("oneOf", "anyOf"):
        return [f"{_key_path(path)}: {_describe_branches(error, schema)}"]
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    why = f" ({_short(description)})" if description else ""
    return [f"{_key_path(path)}: {_describe_value(error)}{why}"]


def _describe_branches(error: ValidationError, schema: Mapping[str, Any]) -> str:
    """What is wrong with a value that matches no branch, or the kind keys that clash."""
    kinds = _branch_kinds(error.validator_value, schema)
    if kinds is None:
        return _short(error.message)
    path = list(error.absolute_path)
    entry = f"an entry of {_key_path(path[:-1])}" if path else "the config"
    rule = f"{entry} has exactly one of {', '.join(kinds)}"
    if not isinstance(error.instance, dict):
        return f"expected a mapping with one of {', '.join(kinds)}, got {_kind_of(error.instance)}"
    present = _kinds_present(kinds, error.instance)
    if len(present) > 1:
        return f"has both {' and '.join(repr(kind) for kind in present)}; {rule}"
    typos = [f"{key!r}: {hint}" for key in error.instance if (hint := _suggestion(key, kinds))]
    return f"{rule}; this one has none" + (f" ({typos[0]})" if typos else "")


def _describe_value(error: ValidationError) -> str:
    """What is wrong with one value, e.g. `expected a number, got the text 'fast'`."""
    instance, expected = error.instance, error.validator_value
    if error.validator == "type":
        wanted = " or ".join(TYPE_NAMES.get(name, name) for name in _as_list(expected))
        number = isinstance(instance, int | float) and not isinstance(instance, bool)
        quote = "string" in _as_list(expected) and number
        return f"expected {wanted}, got {_kind_of(instance)}" + (
            f"; quote it: '{instance}'" if quote else ""
        )
    if error.validator == "enum":
        is_key = "propertyNames" in error.absolute_schema_path
        subject = f"key {instance!r}" if is_key else _short(repr(instance))
        choices = [str(choice) for choice in expected]
        hint = _suggestion(instance, choices) if isinstance(instance, str) else ""
        return f"{subject} is not one of {', '.join(choices)}" + (f"; {hint}" if hint else "")
    if error.validator == "const":
        return f"must be {expected!r}, got {_short(repr(instance))}"
    return _short(error.message)


def _key_path(path: Iterable[Any]) -> str:
    """`apps.bc.env.OMP_NUM_THREADS`, `cache.levels[1].ways`; `config` for the whole config."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.removeprefix(".") or "config"


def _suggestion(word: Any, candidates: list[str], or_list: bool = False) -> str:
    """`did you mean 'x'?` for the nearest candidate, else the candidates if or_list, else ''."""
    nearest = difflib.get_close_matches(str(word), candidates, n=1)
    if nearest:
        return f"did you mean {nearest[0]!r}?"
    return f"valid keys: {', '.join(candidates)}" if or_list else ""


def _kind_of(value: Any) -> str:
    """A value named with its type, e.g. `the text 'ten'`, `the integer 1`."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return f"the text {_short(repr(value))}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    names: dict[type, str] = {dict: "a mapping", list: "a list"}
    return names.get(type(value), type(value).__name__)


def _as_list(value: str | list[str]) -> list[str]:
    """A schema `type`, one name or a list, as a list."""
    return [value] if isinstance(value, str) else list(value)


def _short(text: str, limit: int = 120) -> str:
    """Text cut to `limit` characters, so that no value or schema fills the screen."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_config(config: Mapping[str, Any], base_dir: Path | None = None) -> None:
    """Raise ConfigError naming the key when config values contradict each other (config:
    checked against the schema, its defaults filled in)."""
    split = config["dataset"]["split"]
    if split["warmup"] + split["train"] >= 1:
        raise ConfigError(
            f"dataset.split: warmup ({split['warmup']}) + train ({split['train']}) must be "
            "below 1, leaving a test part"
        )
    for arch in config["archs"]:
        if arch not in config["models"]:
            raise ConfigError(f"models.{arch}: sizes missing for an arch listed in archs")
    line_bytes = config["cache"]["line_bytes"]
    for index, level in enumerate(config["cache"]["levels"]):
        sets, remainder = divmod(level["size_kib"] * 1024, level["ways"] * line_bytes)
        if remainder or sets & (sets - 1):
            raise ConfigError(
                f"cache.levels[{index}] ({level['name']}): {level['size_kib']} KiB / "
                f"{level['ways']} ways / {line_bytes} B lines is not a power-of-two number of sets"
            )
    base_dir = base_dir or Path.cwd()
    for name, source in config["apps"].items():
        if "import" in source and not (base_dir / source["import"]).is_file():
            raise ConfigError(f"apps.{name}.import: no such file: {source['import']}")
    from packd.methods import METHODS

    unknown = [name for name in config.get("methods") or [] if name not in METHODS]
    if unknown:
        raise ConfigError(
            f"methods: unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}"
        )
    if config.get("methods") and "teacher" not in config["methods"]:
        raise ConfigError("methods: must include teacher (the ceiling every table compares to)")
    if config["cluster"]["k"] < 1:
        raise ConfigError("cluster.k must be at least 1")
