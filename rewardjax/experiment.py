"""Running an experiment file: presets, `--set key=value` overrides, output directory.

An experiment defines a frozen config dataclass, a dict of presets (`tiny`, `paper`, ...)
and `run(config, out_dir) -> dict`; `main(...)` parses the command line:

    python experiments/grpo_arith.py --preset tiny --set rl.steps=50 --out runs/grpo
    python experiments/grpo_arith.py --preset tiny --set mesh.data=2 mesh.fsdp=2 mesh.tensor=2

Multi-host: every host runs the same command with `--distributed` (a TPU pod) or
`--coordinator HOST:PORT --num-processes N --process-id I` (explicit, e.g. local CPU
processes over gloo); only process 0 writes `config.json`, logs, plots and results.

and `run` ends by printing `RESULT key=value ...` and writing the same figures to
`<out>/result.json` (`rewardjax.train.write_result`). Beside them `main` writes
`<out>/run.json`, where the figures came from (experiment, preset, paper, commit, start
time, overrides, wall minutes, processes), which `python -m rewardjax results` reads.

`--seeds 0,1,2` runs the preset once per value of its config's top-level `seed`, each
into `<out>/seed<k>/`, then prints one last RESULT line with each numeric figure's mean,
`<figure>_min` and `<figure>_max`, and writes them to `<out>/result.json` with the seed
runs' own figures under `per_seed` (one run's figure is one draw; the spread says how
much the seed alone moves it).

A mistake on the command line is the user's, not a bug: `main` prints the one message
the error carries, `[<name>] error: ...` on stderr, and exits with status 2 (argparse's
status for usage errors) instead of showing a traceback; `--debug` shows the traceback.
Which errors count as the user's is in `is_user_error`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rewardjax import results as results_lib

USER_ERROR_STATUS = 2


class UserInputError(ValueError):
    """A command-line setting that cannot be used (unknown key, malformed value, ...)."""


def is_user_error(err: BaseException, config: Any) -> bool:
    """Whether an error escaping an experiment's `run(config, out)` is the user's input.

    The rule: the error's class says it is about input the user chose, or it names a
    path the user's config gives. That is
      * `UserInputError`;
      * `rewardjax.models.ConfigError` / `CheckpointError`: the model settings or the
        checkpoint directory the config points at are invalid or unsupported;
      * `FileNotFoundError` / `NotADirectoryError` whose message or filename contains
        the value of a config field named `path` or ending in `_path` or `_dir` (a
        `paper` preset pointing at a checkpoint that is not there).
    Any other error, and a missing file the config does not name, is a bug to be seen
    with its traceback.
    """
    from rewardjax.models import CheckpointError, ConfigError

    if isinstance(err, (UserInputError, ConfigError, CheckpointError)):
        return True
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        text = f"{err} {err.filename or ''}"
        return any(path in text for path in _config_paths(config))
    return False


def _config_paths(x: Any) -> list[str]:
    if not dataclasses.is_dataclass(x):
        return []
    paths = []
    for f in dataclasses.fields(x):
        value = getattr(x, f.name)
        if (isinstance(value, (str, Path)) and str(value)
                and (f.name == "path" or f.name.endswith(("_path", "_dir")))):
            paths.append(str(value))
        paths += _config_paths(value)
    return paths


def _accepts_none(annotation: Any) -> bool:
    return (annotation is Any or annotation is None or annotation is type(None)
            or type(None) in typing.get_args(annotation))


def _coerce(text: str, annotation: Any, current: Any) -> Any:
    """Parses `text` for a field annotated `annotation` (current value as a hint)."""
    if text.lower() in ("none", "null"):
        if not _accepts_none(annotation):
            name = annotation.__name__ if isinstance(annotation, type) else annotation
            raise ValueError(f"the field is {name}, which does not take None")
        return None
    if dataclasses.is_dataclass(current):
        raise ValueError(f"the field is a {type(current).__name__} config: set its fields "
                         "one by one (key.field=value)")
    target = type(current) if current is not None else None
    origin = typing.get_origin(annotation)
    if target is None or target is type(None):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        target = args[0] if args else str
    if target is bool or annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if target in (tuple, list) or origin in (tuple, list):
        value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v]
        inner = typing.get_args(annotation)
        cast = inner[0] if inner and inner[0] is not Ellipsis else None
        if isinstance(current, (tuple, list)) and current:
            cast = type(current[0])
        return tuple(cast(v) if cast else v for v in value)
    if target in (int, float, str):
        return target(text)
    return json.loads(text)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Applies `key=value` (dotted keys reach nested dataclasses) via dataclasses.replace.

    Raises `UserInputError` naming the override for an unknown key, a value that does
    not parse, or one the config's validation rejects.
    """
    for item in overrides:
        if "=" not in item:
            raise UserInputError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        try:
            config = _replace_path(config, key.strip().split("."), text, key)
        except UserInputError:
            raise
        except (ValueError, TypeError) as err:  # the configs' own checks (__post_init__)
            raise UserInputError(f"override {item!r}: {err}") from err
    return config


def _replace_path(obj: Any, path: list[str], text: str, full_key: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise UserInputError(f"override {full_key!r}: {type(obj).__name__} is not a config")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    name = path[0]
    if name not in fields:
        raise UserInputError(f"override {full_key!r}: {type(obj).__name__} has no field {name!r}; "
                             f"fields: {sorted(fields)}")
    current = getattr(obj, name)
    if len(path) > 1:
        return dataclasses.replace(obj, **{name: _replace_path(current, path[1:], text, full_key)})
    hints = typing.get_type_hints(type(obj))
    try:
        value = _coerce(text, hints.get(name, type(current)), current)
    except (ValueError, json.JSONDecodeError) as err:
        raise UserInputError(f"override {full_key!r}: cannot parse {text!r}: {err}") from None
    return dataclasses.replace(obj, **{name: value})


def main(presets: Mapping[str, Any], run: Callable[[Any, Path], dict], *,
         description: str = "", default_preset: str = "tiny", argv=None) -> dict:
    """Parses the command line, runs the chosen preset, returns `run`'s figures (with
    `--seeds`, their `seed_summary`).

    Exits with status 2 and a one-line message on stderr for a user's mistake: an
    unknown or malformed `--set` (anything `apply_overrides` or the config's own
    validation rejects), `--seeds` for a config without a top-level `seed`, or an error
    from `run` that `is_user_error` attributes to the user's input. `--debug` re-raises
    instead, with the traceback.
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=default_preset, choices=sorted(presets))
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help="override config fields: --set a=1 b.c=2 (repeatable)")
    parser.add_argument("--out", default=None, help="output directory (default runs/<name>-<preset>)")
    parser.add_argument("--seeds", type=_seeds_arg, default=None, metavar="K,K,...",
                        help="run once per seed (the config's `seed`) into <out>/seed<k>/ and "
                             "report each figure's mean, _min and _max")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (presets + --set), then run")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a configuration error instead of one line")
    group = parser.add_argument_group(
        "multi-host", "one process per host; call before any other JAX work (see tpu/README.md)")
    group.add_argument("--distributed", action="store_true",
                       help="jax.distributed with everything discovered (TPU pods, SLURM)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="explicit coordinator (with --num-processes and --process-id); "
                            "CPU processes talk over gloo")
    group.add_argument("--num-processes", type=int, default=None)
    group.add_argument("--process-id", type=int, default=None)
    args = parser.parse_args(argv)
    _start_distributed(parser, args)
    module = typing.cast(Any, run).__module__
    if module == "__main__":  # run as a script: name the run after the file
        module = Path(getattr(sys.modules["__main__"], "__file__", "experiment")).stem
    name = Path(module.replace(".", "/")).name
    config = presets[args.preset]
    try:
        config = apply_overrides(config, args.overrides)
        if args.seeds is not None:
            _check_seed_field(config)
    except UserInputError as err:
        _user_error(name, err, debug=args.debug)
    out = Path(args.out or f"runs/{name}-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    record = _run_record(run, name, args, description)
    if _is_writer():
        (out / "config.json").write_text(json.dumps(_jsonable(config), indent=2))
        if args.print_config:
            print(json.dumps(_jsonable(config), indent=2))
        print(f"[{name}] preset={args.preset} outputs -> {out}", flush=True)
    try:
        # run() prints the RESULT line last.
        if args.seeds is None:
            return _timed_run(run, config, out, record)
        return _run_seeds(run, config, out, args.seeds, record, name)
    except Exception as err:
        if not is_user_error(err, config):
            raise
        _user_error(name, err, debug=args.debug)


def seed_summary(seeds: Sequence[int], per_seed: Sequence[Mapping[str, Any]]) -> dict:
    """The figures of one preset run once per seed: for every figure numeric in all the
    runs, its mean and `<figure>_min` / `<figure>_max`; then `seeds` and `per_seed`, the
    runs' own figures each with its `seed`.

    Raises ValueError when a run already reports a figure named like a range key
    (`x_min` beside `x`): the two would overwrite each other.
    """
    if len(seeds) != len(per_seed) or not seeds:
        raise ValueError(f"seed_summary: {len(seeds)} seeds but {len(per_seed)} results")
    names = [k for k, v in per_seed[0].items()
             if all(results_lib.is_number(r.get(k)) for r in per_seed)]
    clash = sorted({f"{k}{end}" for k in names for end in ("_min", "_max")
                    if any(f"{k}{end}" in r for r in per_seed)})
    if clash:
        raise ValueError(f"--seeds: the runs report figures {clash}, which the mean/range "
                         "keys of the summary would overwrite; rename them in the RESULT")
    summary: dict[str, Any] = {}
    for k in names:
        values = [float(r[k]) for r in per_seed]
        summary[k] = round(sum(values) / len(values), 4)
        summary[f"{k}_min"] = round(min(values), 4)
        summary[f"{k}_max"] = round(max(values), 4)
    summary["seeds"] = list(seeds)
    summary["per_seed"] = [{"seed": s, **_jsonable(dict(r))} for s, r in zip(seeds, per_seed)]
    return summary


def _seeds_arg(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected at least one seed, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return seeds


def _check_seed_field(config: Any) -> None:
    fields = [f.name for f in dataclasses.fields(config)] if dataclasses.is_dataclass(config) else []
    if "seed" not in fields:
        nested = _seed_paths(config)
        hint = (f" (it has {', '.join(nested)}: run once per value with --set {nested[0]}=K)"
                if nested else "")
        raise UserInputError(f"--seeds sets the config's top-level field 'seed', but "
                             f"{type(config).__name__} has none{hint}; fields: {sorted(fields)}")
    if not isinstance(getattr(config, "seed"), int):
        raise UserInputError(f"--seeds: {type(config).__name__}.seed is "
                             f"{getattr(config, 'seed')!r}, expected an int")


def _seed_paths(config: Any, prefix: str = "") -> list[str]:
    if not dataclasses.is_dataclass(config):
        return []
    paths = []
    for f in dataclasses.fields(config):
        if f.name == "seed":
            paths.append(prefix + f.name)
        else:
            paths += _seed_paths(getattr(config, f.name), f"{prefix}{f.name}.")
    return paths


def _run_record(run: Callable, name: str, args, description: str) -> dict:
    """What `run.json` says of a run before it starts (`minutes` is filled in after)."""
    import jax

    module = sys.modules.get(typing.cast(Any, run).__module__)
    headline = getattr(module, "HEADLINE", None)
    if headline is not None and (not isinstance(headline, (tuple, list))
                                 or not all(isinstance(k, str) for k in headline)):
        raise TypeError(f"{name}.HEADLINE must be a tuple of RESULT figure names, "
                        f"got {headline!r}")
    source = getattr(module, "__file__", None)
    return {
        "experiment": name,
        "preset": args.preset,
        "paper": (results_lib.paper_of(getattr(module, "__doc__", None))
                  or results_lib.paper_of(description)),
        "headline": list(headline) if headline is not None else None,
        "commit": results_lib.git_commit(Path(source).parent if source else "."),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "overrides": list(args.overrides),
        "processes": jax.process_count(),
        "minutes": None,
    }


def _write_record(out: Path, record: dict) -> None:
    if _is_writer():
        (out / results_lib.RUN_FILE).write_text(json.dumps(record, indent=2))


def _timed_run(run: Callable[[Any, Path], dict], config: Any, out: Path, record: dict) -> dict:
    _write_record(out, record)  # written first, so a run that dies still says what it was
    start = time.time()
    result = run(config, out)
    _write_record(out, {**record, "minutes": round((time.time() - start) / 60, 2)})
    return result


def _run_seeds(run: Callable[[Any, Path], dict], config: Any, out: Path, seeds: Sequence[int],
               record: dict, name: str) -> dict:
    start = time.time()
    _write_record(out, {**record, "seeds": list(seeds)})
    per_seed = []
    for seed in seeds:
        seed_out = out / f"seed{seed}"
        seed_out.mkdir(parents=True, exist_ok=True)
        seed_config = dataclasses.replace(config, seed=seed)
        if _is_writer():
            (seed_out / "config.json").write_text(json.dumps(_jsonable(seed_config), indent=2))
            print(f"[{name}] seed={seed} outputs -> {seed_out}", flush=True)
        per_seed.append(_timed_run(run, seed_config, seed_out, {**record, "seed": seed}))
    summary = seed_summary(seeds, per_seed)
    if _is_writer():
        figures = {k: v for k, v in summary.items() if k not in ("seeds", "per_seed")}
        (out / results_lib.RESULT_FILE).write_text(json.dumps(summary, indent=2))
        # Last, so that a log's final RESULT line is the summary, not the last seed's.
        print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    _write_record(out, {**record, "seeds": list(seeds),
                        "minutes": round((time.time() - start) / 60, 2)})
    return summary


def _start_distributed(parser: argparse.ArgumentParser, args) -> None:
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            parser.error("--coordinator, --num-processes and --process-id go together")
        from rewardjax.sharding import initialize_distributed
        initialize_distributed(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id,
                               cpu_collectives="gloo")
    elif args.distributed:
        from rewardjax.sharding import initialize_distributed
        initialize_distributed()


def _is_writer() -> bool:
    # Imported late: jax.distributed must start before anything touches JAX.
    from rewardjax.train.metrics import is_writer
    return is_writer()


def _user_error(name: str, err: Exception, *, debug: bool) -> typing.NoReturn:
    if debug:
        raise err
    print(f"[{name}] error: {err}", file=sys.stderr, flush=True)
    raise SystemExit(USER_ERROR_STATUS)


def _jsonable(x):
    if dataclasses.is_dataclass(x):
        return {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x if isinstance(x, (int, float, str, bool, type(None))) else repr(x)
