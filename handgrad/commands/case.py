"""`handgrad case`: write a case file (inputs and reference answers) for any implementation.

With no option but --out, a small case of the tutorial's spec (sigmoid, no bias, many-to-one,
1/2 squared error, Window(5)) with B=2, T=8, D=3, H=4, O=1. The format follows the suffix
(.npz or .json); see the README, section "Any language: case files and candidate files".
"""
from __future__ import annotations

import dataclasses

HELP = "write a case file (.npz or .json): spec, params, inputs, targets, h0, reference loss and gradients"


def add_arguments(parser):
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="where to write the case (.npz or .json)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_spec_arguments(parser)
    s = parser.add_argument_group("shapes and values")
    for letter, default, what in (("B", 2, "batch"), ("T", 8, "time steps"), ("D", 3, "inputs"),
                                  ("H", 4, "hidden units"), ("O", 1, "outputs")):
        s.add_argument(f"-{letter}", type=int, default=default, help=f"{what} (default {default})")
    s.add_argument("--scale", default="moderate",
                   choices=("small", "moderate", "saturating", "tutorial"),
                   help="weight scale (default moderate)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--no-h0", action="store_true", help="start from h0 = 0 (no h0 in the file)")


def add_spec_arguments(parser) -> None:
    """The spec options (shared with `handgrad check --exec`); default: the tutorial's spec."""
    from ..spec import ACTIVATIONS, CELLS, GRU_RESETS, LOSSES, OUTPUTS, REDUCTIONS
    g = parser.add_argument_group("spec (default: the tutorial's)")
    g.add_argument("--cell", choices=CELLS,
                   help="the recurrent cell (default elman); gru and lstm in PyTorch's layout")
    g.add_argument("--gru-reset", choices=GRU_RESETS, dest="gru_reset",
                   help="GRU only: the reset gate after (PyTorch) or before the product")
    g.add_argument("--activation", choices=ACTIVATIONS)
    g.add_argument("--bias", action=_BoolAction, nargs=0, help="with biases (--no-bias: without)")
    g.add_argument("--no-bias", dest="bias", action=_BoolAction, nargs=0, help=_suppress())
    g.add_argument("--head", action=_BoolAction, nargs=0,
                   help="with the output layer V, c (default); --no-head: a layer, o_t = h_t")
    g.add_argument("--no-head", dest="head", action=_BoolAction, nargs=0, help=_suppress())
    g.add_argument("--output", choices=OUTPUTS)
    g.add_argument("--loss", choices=LOSSES,
                   help="linear: ys are upstream gradients dL/do_t (a layer's backward)")
    g.add_argument("--reduction", choices=REDUCTIONS)
    g.add_argument("--truncation", metavar="T",
                   help="full | window:K | chunks:K | tbptt:K1,K2")


def spec_from_args(args):
    """The tutorial's spec with the options given changed."""
    from ..spec import Spec, parse_truncation

    changes = {k: getattr(args, k) for k in ("activation", "bias", "output", "loss", "reduction",
                                             "head", "cell", "gru_reset")
               if getattr(args, k) is not None}
    if changes.get("cell", "elman") != "elman" and "activation" not in changes:
        changes["activation"] = "tanh"          # gated cells: fixed gates (the tutorial's is sigmoid)
    if args.truncation is not None:
        changes["truncation"] = parse_truncation(args.truncation)
    return dataclasses.replace(Spec.tutorial(), **changes)


class _BoolAction:
    """--bias / --no-bias without argparse.BooleanOptionalAction's default display."""

    def __new__(cls, option_strings, dest, nargs=0, **kwargs):
        import argparse

        class Action(argparse.Action):
            def __call__(self, parser, namespace, values, option_string=None):
                setattr(namespace, self.dest, not option_string.startswith("--no-"))
        return Action(option_strings, dest, nargs=0, **{k: v for k, v in kwargs.items()
                                                          if k != "nargs"})


def _suppress():
    import argparse
    return argparse.SUPPRESS


def describe_spec(spec) -> str:
    """One line naming every field of `spec` (truncation as full | Window(k) | ...)."""
    fields = spec.to_dict()
    fields["truncation"] = "full" if spec.truncation is None else repr(spec.truncation)
    return ", ".join(f"{k} {v}" for k, v in fields.items())


JSON_BYTES_PER_NUMBER = 18      # measured 19.5 for float64 values written by write_case


def _check_readable(args, spec, sizes) -> None:
    """Refuse a case file that handgrad could not read back (larger than the file limit)."""
    from .._budget import _culprit, rnn_sizes
    from .._files import max_file_bytes, max_json_bytes
    B, T, D, H, O = (args.B, args.T, args.D, args.H, args.O)
    ys = B * O if spec.output == "last" else B * T * O
    numbers = B * T * D + ys + 2 * B * H + 2 * rnn_sizes(D, H, O) + 1
    as_json = str(args.out).lower().endswith(".json")
    size = numbers * (JSON_BYTES_PER_NUMBER if as_json else 8)
    limit = max_json_bytes() if as_json else max_file_bytes()
    if size > limit:
        raise ValueError(f"{_culprit(sizes)}: the case file would take about {size / 2**20:.3g} "
                         f"MiB, more than the {limit / 2**20:.3g} MiB handgrad reads back "
                         f"({'write .npz for larger cases; ' if as_json else ''}--max-file-mb N "
                         "or HANDGRAD_MAX_FILE_MB=N raise the limit)")


def run(args) -> int:
    from .._files import refuse_existing
    from ..casefile import case_from_arrays, write_case
    from ..strategies import make_case

    refuse_existing([args.out], args.force)
    spec = spec_from_args(args)
    for letter in "BTDHO":
        value = getattr(args, letter)
        if value < 1:
            raise ValueError(f"-{letter} must be a positive integer, got {value}")
    if spec.loss == "cross_entropy" and args.O < 2:
        raise ValueError(f"-O must be at least 2 for cross_entropy (class ids in [0, O)), got {args.O}")
    from .._budget import case_cost, check
    sizes = {f"-{k}": (getattr(args, k), d) for k, d in zip("BTDHO", (2, 8, 3, 4, 1))}
    gates = {"gru": 3, "lstm": 4}.get(getattr(spec, "cell", "elman"), 1)
    check("this case", *case_cost(args.B, args.T, args.D, args.H, args.O, gates), sizes)
    _check_readable(args, spec, sizes)
    drawn = make_case(spec, args.B, args.T, args.D, args.H, args.O, scale=args.scale,
                      seed=args.seed, with_h0=not args.no_h0)
    case = case_from_arrays(spec, drawn.params, drawn.xs, drawn.ys, drawn.h0)
    path = write_case(args.out, case, exclusive=not args.force)   # a concurrent run: refused
    print(f"wrote {path}: {args.B=}, {args.T=}, {args.D=}, {args.H=}, {args.O=}; "
          f"loss {case.loss:.10g}".replace("args.", ""))
    from ..spec import Spec
    default = " (the default: the tutorial's)" if spec == Spec.tutorial() else ""
    print(f"spec{default}: {describe_spec(spec)}")
    return 0
