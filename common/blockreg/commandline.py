"""``blockreg register``: register a movie in this process from the command line.

The options are turned into a :class:`~blockreg.jobspec.JobSpec` and run through
:func:`blockreg.jobs.run_inprocess`, the same path the service uses, so a CLI run and a service job
with the same parameters compute the same thing.  The ``blockreg`` entry point
(``blockreg_services.cli``) mounts :func:`add_register_parser` and calls :func:`run_register`.

The algorithm's options (``--gridsize``, ``--maxshift``, ``--lambda``, ...) are generated from the
params model of every registered algorithm (:mod:`blockreg.registry`): one option per field, named
after the field's public name, with its description as help; ``--algorithm`` chooses the algorithm.
Values are comma-separated where the field takes a list; the rules are the spec's and the
algorithm's, reported under the option's name.

Every usage problem (a malformed number, a wrong count, a missing input, an existing output) is
reported as one line ``blockreg register: error: --option: problem`` on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import math
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path

__all__ = ["add_register_parser", "run_register"]

# spec field (first dotted parts) -> the option that sets it, for error messages; the algorithm's
# params are added from the registry (_param_options)
_OPTION_OF_FIELD = {
    "input.path": "INPUT",
    "input.dataset": "--dataset",
    "input.channel": "--channel",
    "input.frames": "--frames",
    "fixed_index": "--fixed-index",
    "preprocess.bias": "--bias",
    "preprocess.sigma_lp": "--sigma-lp",
    "preprocess.sigma_hp": "--sigma-hp",
    "algorithm": "--algorithm",
    "monitor": "--monitor",
    "output.path": "--out",
}


class _UsageError(ValueError):
    def __init__(self, option, problem):
        super().__init__(f"{option}: {problem}")


@dataclass(frozen=True)
class _ParamOption:
    """One generated option: a field of a registered algorithm's params model."""

    option: str              # "--lambda"
    field: str               # the spec's name of the field ("lambda")
    names: tuple             # the field's names in error locations (alias and Python name)
    kinds: frozenset         # scalar types a value may have: int, float, str, bool
    takes_list: bool         # the field accepts a list (comma-separated values)
    takes_scalar: bool       # ... or a single value
    algorithms: tuple        # the algorithms that have it

    @property
    def dest(self) -> str:
        return "param_" + self.field.replace("-", "_")


def _members(annotation):
    """The alternatives of a type annotation, without Annotated/Optional wrappers."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _scalar_kinds(annotation) -> set:
    kinds = set()
    for member in _members(annotation):
        if typing.get_origin(member) is typing.Literal:
            kinds |= {type(v) for v in typing.get_args(member)}
        elif member in (bool, int, float):
            kinds.add(member)
        else:
            kinds.add(str)
    return kinds


def _param_options() -> dict[str, _ParamOption]:
    """Every registered algorithm's params fields as options, keyed by option string."""
    from .registry import algorithm_names, get_algorithm

    options: dict[str, _ParamOption] = {}
    for name in algorithm_names():
        for py_name, info in get_algorithm(name).params.model_fields.items():
            field = info.alias or py_name
            kinds, takes_list, takes_scalar = set(), False, False
            for member in _members(info.annotation):
                if typing.get_origin(member) is list:
                    takes_list = True
                    kinds |= _scalar_kinds(typing.get_args(member)[0])
                else:
                    takes_scalar = True
                    kinds |= _scalar_kinds(member)
            option = "--" + field.replace("_", "-")
            known = options.get(option)
            options[option] = _ParamOption(option, field, (field, py_name), frozenset(kinds),
                                           takes_list, takes_scalar,
                                           (known.algorithms if known else ()) + (name,))
    return options


def _metavar(opt: _ParamOption, info) -> str | None:
    literal = [m for m in _members(info.annotation) if typing.get_origin(m) is typing.Literal]
    if literal and not opt.takes_list:
        return "{" + ",".join(str(v) for m in literal for v in typing.get_args(m)) + "}"
    letter = opt.field[0].upper()
    return f"{letter}[,{letter}..]" if opt.takes_list else letter


def _variables_help() -> str:
    from .registry import algorithm_names, get_algorithm

    return "; ".join(f"{name}: {', '.join(get_algorithm(name).variables)}"
                     for name in algorithm_names() if get_algorithm(name).variables)


def _add_param_options(parser) -> None:
    from .registry import algorithm_names, get_algorithm

    names = algorithm_names()
    parser.add_argument("--algorithm", default="apertures", metavar="NAME",
                        help="the registered algorithm to run: " + "; ".join(
                            f"{n} ({get_algorithm(n).summary})" if get_algorithm(n).summary else n
                            for n in names) + " (default apertures)")
    options = _param_options()
    groups = {}
    for opt in options.values():
        first = opt.algorithms[0]
        if first not in groups:
            groups[first] = parser.add_argument_group(f"{first} parameters")
        entry = get_algorithm(first)
        info = next(i for n, i in entry.params.model_fields.items() if (i.alias or n) == opt.field)
        help_text = info.description or ""
        if not info.is_required():
            help_text += f" (default {info.get_default()})"
        elif len(opt.algorithms) < len(names):
            help_text += f" (required by {', '.join(opt.algorithms)})"
        else:
            help_text += " (required)"
        if bool in opt.kinds:
            groups[first].add_argument(opt.option, dest=opt.dest, default=None,
                                       action=argparse.BooleanOptionalAction, help=help_text)
        else:  # a string: parsed by run_register, so a bad value is one line naming the option
            groups[first].add_argument(opt.option, dest=opt.dest, metavar=_metavar(opt, info),
                                       help=help_text)


def _param_value(opt: _ParamOption, text):
    """The spec value of a generated option's text: a number/word, or a list of them."""
    if isinstance(text, bool):  # a --flag/--no-flag
        return text
    if opt.kinds <= {int, float} and opt.kinds:
        kind = float if float in opt.kinds else int
        values = _numbers(opt.option, text, kind)
    else:
        values = [part.strip() for part in str(text).split(",")] if opt.takes_list else [str(text)]
        if int in opt.kinds:  # e.g. Literal[1, 2] mixed with words: numbers where they parse
            values = [int(v) if v.lstrip("-").isdigit() else v for v in values]
    if opt.takes_list and (len(values) > 1 or not opt.takes_scalar):
        return values
    if len(values) > 1:
        raise _UsageError(opt.option, f"expected one value, got {text!r}")
    return values[0]


def add_register_parser(subparsers):
    """Add the ``register`` options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction or argparse.ArgumentParser
        The ``add_subparsers()`` object (a ``register`` subcommand is created), or an already
        created ``register`` parser to fill in.

    Returns
    -------
    argparse.ArgumentParser
        The ``register`` parser.
    """
    if hasattr(subparsers, "add_parser"):
        parser = subparsers.add_parser("register", help="register a movie in this process")
    else:
        parser = subparsers
    parser.description = (
        "Register every frame of INPUT to a fixed frame with a registered algorithm (--algorithm, "
        "by default aperture-based deformable registration) and write the monitored variables to "
        "a Zarr store.")
    # numbers are parsed by run_register, so a bad value gets a one-line message naming the option
    parser.add_argument("input", metavar="INPUT", help="movie: .npy, .tif/.tiff, .zarr or .h5")
    parser.add_argument("--out", required=True, metavar="OUT.zarr", help="results store (must not exist)")
    parser.add_argument("--fixed-index", metavar="T", help="frame used as the fixed image (default: middle)")
    parser.add_argument("--monitor", metavar="NAMES",
                        help="variables to store, comma-separated (default: the algorithm's, "
                             "u,mismatch for apertures); "
                             + _variables_help())
    parser.add_argument("--bias", metavar="B", help="camera offset subtracted before the sqrt transform")
    parser.add_argument("--sigma-hp", metavar="S[,S..]", help="high-pass sigma in pixels (default off)")
    parser.add_argument("--sigma-lp", metavar="S[,S..]", help="low-pass sigma in pixels (default off)")
    parser.add_argument("--workers", default="1", metavar="N", help="worker processes (default 1)")
    parser.add_argument("--frames", metavar="START:STOP[:STEP]", help="frames to register (default all)")
    parser.add_argument("--dataset", metavar="NAME", help="array inside a Zarr group or HDF5 file")
    parser.add_argument("--channel", metavar="C", help="channel of a multi-channel input")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (it is only drawn on a terminal anyway)")
    parser.add_argument("--no-report", action="store_true",
                        help="skip the quality report at the end")
    _add_param_options(parser)
    return parser


def _number(option, text, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise _UsageError(option, f"expected {'an integer' if kind is int else 'a number'}, "
                                  f"got {text!r}") from None
    if kind is float and math.isnan(value):
        raise _UsageError(option, "must not be NaN")
    return value


def _numbers(option, text, kind=float):
    parts = [p.strip() for p in str(text).split(",")]
    if any(p == "" for p in parts):
        raise _UsageError(option, f"expected comma-separated numbers, got {text!r}")
    return [_number(option, p, kind) for p in parts]


def _frames(text):
    parts = str(text).split(":")
    if len(parts) not in (2, 3):
        raise _UsageError("--frames", f"expected START:STOP or START:STOP:STEP, got {text!r}")
    values = [_number("--frames", p, int) if p.strip() else None for p in parts]
    if values[1] is None:
        raise _UsageError("--frames", f"STOP is required, got {text!r}")
    start = 0 if values[0] is None else values[0]
    return [start, values[1]] + ([values[2]] if len(values) == 3 and values[2] is not None else [])


def _one_value_or_list(values):
    return values[0] if len(values) == 1 else values


def _spec_from_args(args) -> dict:
    # that INPUT exists and --out does not is the spec's rule (input.path, output.path)
    input_path = Path(args.input)
    monitor = None if args.monitor is None else [m.strip() for m in str(args.monitor).split(",")]
    if monitor is not None and any(not m for m in monitor):
        raise _UsageError("--monitor", f"expected comma-separated names, got {args.monitor!r}")
    params = {}
    for opt in _param_options().values():
        text = getattr(args, opt.dest, None)
        if text is not None:  # not given: the params model's default (or its "Field required")
            params[opt.field] = _param_value(opt, text)
    spec = {
        "input": {"path": str(input_path)},
        "algorithm": args.algorithm,
        "params": params,
        "output": {"path": str(args.out)},
    }
    if monitor is not None:  # else the algorithm's default_monitor
        spec["monitor"] = monitor
    if args.dataset is not None:
        spec["input"]["dataset"] = args.dataset
    if args.channel is not None:
        spec["input"]["channel"] = _number("--channel", args.channel, int)
    if args.frames is not None:
        spec["input"]["frames"] = _frames(args.frames)
    if args.fixed_index is not None:
        spec["fixed_index"] = _number("--fixed-index", args.fixed_index, int)
    preprocess = {}
    if args.bias is not None:
        preprocess["bias"] = _number("--bias", args.bias)
    if args.sigma_hp is not None:
        preprocess["sigma_hp"] = _one_value_or_list(_numbers("--sigma-hp", args.sigma_hp))
    if args.sigma_lp is not None:
        preprocess["sigma_lp"] = _one_value_or_list(_numbers("--sigma-lp", args.sigma_lp))
    if preprocess:
        spec["preprocess"] = preprocess
    return spec


def _option_for(field: str) -> str:
    parts = field.split(".")
    if parts[0] == "params" and len(parts) > 1:
        for opt in _param_options().values():
            if parts[1] in opt.names:
                return opt.option
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in _OPTION_OF_FIELD:
            return _OPTION_OF_FIELD[key]
    return field


def _fail(message) -> int:
    print(f"blockreg register: error: {message}", file=sys.stderr)
    return 2


def run_register(args) -> int:
    """Run ``blockreg register`` with parsed ``args``; returns the exit code (0 ok, 2 usage error).

    Parameters
    ----------
    args : argparse.Namespace
        From a parser built by :func:`add_register_parser` (values are still strings).
    """
    from .jobs import run_inprocess
    from .jobspec import SpecError, validate_spec

    try:
        spec = _spec_from_args(args)
        workers = _number("--workers", args.workers, int)
        if workers < 1:
            raise _UsageError("--workers", f"must be at least 1, got {workers}")
        spec = validate_spec(spec, check_input=True)
    except _UsageError as exc:
        return _fail(exc)
    except SpecError as exc:
        # one line per problem, named by the option the user typed
        for err in exc.errors:
            problem = err["problem"]
            if err["field"].startswith("params.") and problem == "unknown field":
                problem = f"not a parameter of --algorithm {args.algorithm}"
            _fail(f"{_option_for(err['field'])}: {problem}")
        return 2
    from .progress import ProgressBar

    bar = ProgressBar(enabled=False if args.quiet else None)
    try:
        results = run_inprocess(spec, out=args.out, workers=workers, progress=bar)
    except ValueError as exc:
        # e.g. a frame that is all NaN, or a fixed image without finite pixels
        return _fail(exc)
    finally:
        bar.close()
    nframes = len(next(iter(results.values())))
    summary = ", ".join(f"{name} {tuple(v.shape)}" for name, v in results.items())
    print(f"registered {nframes} frames -> {args.out} ({summary})")
    if not args.no_report:
        _print_report(args.out)
    return 0


def _print_report(store) -> None:
    """Compute the quality report, save it in the store, print its key figures and warnings.

    Without matplotlib (the ``report`` extra) the numbers are still computed and printed; a
    report that cannot be computed at all is a warning, never a failed registration.
    """
    from .qc.text import bound_warning, key_figures

    try:
        from .qc import write_report

        report, _ = write_report(store)
        saved = True
    except ImportError:
        from .qc import compute_report

        report, saved = compute_report(store), False
    except Exception as exc:  # noqa: BLE001 - the registration itself succeeded
        print(f"warning: no quality report ({type(exc).__name__}: {exc})", file=sys.stderr)
        return
    print("quality report" + (f" (saved; `blockreg report {store} --out report.html`):"
                              if saved else ":"))
    for line in key_figures(report):
        print(f"  {line}")
    warning = bound_warning(report)
    if warning:
        print(warning, file=sys.stderr)


def main(argv=None) -> int:  # pragma: no cover - convenience for `python -m blockreg.commandline`
    parser = argparse.ArgumentParser(prog="blockreg register")
    add_register_parser(parser)
    return run_register(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
