"""`handgrad compare CASE CANDIDATE`: check an implementation's answers against a case file.

With `--exec CMD` the program itself is run (on the case when CANDIDATE is not given, and on the
problems the report needs): a mismatch then gets the same time-step blame and diagnosis as
`hg.check`. Exit status: 0 every answer matches, 1 a mismatch (the same report as `hg.check`),
2 a bad file.
"""
from __future__ import annotations

HELP = ("check a candidate's loss and gradients file against a case file "
        "(exit 0 match, 1 mismatch, 2 bad file)")


def add_arguments(parser):
    from ._types import float_between

    parser.add_argument("case", metavar="CASE", help="a case file written by `handgrad case`")
    parser.add_argument("candidate", metavar="CANDIDATE", nargs="?",
                        help="the implementation's answers: grad_U, grad_W, grad_V (grad_b, "
                             "grad_c with bias; grad_h0, loss optional), .npz or .json; "
                             "optional with --exec")
    parser.add_argument("--exec", dest="exec_command", metavar="CMD",
                        help="the program that wrote CANDIDATE: '... {case} ... {out}' (see "
                             "`handgrad check --exec`); run to tell which time step is wrong")
    parser.add_argument("--timeout", type=float_between(0), default=60.0,
                        help="seconds per run of CMD (default 60)")
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (default: by each array's dtype, TOLERANCES['float64'] "
                             "or ['float32'], above the round-off floor of the case)")


def run(args) -> int:
    from ..casefile import read_candidate, read_case, verify_case
    from ..oracle.check import mismatch
    from ..oracle.evaluate import Answer, Expected, compare
    from ..tolerances import TOLERANCES

    if args.rtol is not None and not 0 < args.rtol < 1:
        raise ValueError(f"--rtol must be in (0, 1), got {args.rtol}")
    if args.candidate is None and args.exec_command is None:
        raise ValueError("give a CANDIDATE file, or --exec CMD to run the program on the case")
    case = read_case(args.case)
    verify_case(args.case, case, TOLERANCES["jax"])
    program = None
    if args.exec_command is not None:
        from pathlib import Path

        from ..oracle.exec import program_answer
        from ..oracle.report import candidate_message
        got, program = program_answer(case, args.exec_command, args.timeout,
                                      Path(args.case).suffix.lower())
        if args.candidate is None and not isinstance(got, Answer):
            print(candidate_message(spec=case.spec, case=case, detail=got.detail,
                                    path=args.case, kind=got.kind))
            return 1
    if args.candidate is not None:
        cand = read_candidate(args.candidate, case)
        loss_given = cand.loss is not None
        answer = Answer(cand.loss if loss_given else case.loss, cand.grads, cand.dtype,
                        cand.dtypes)
    else:
        answer, loss_given = got, program.loss_returned
    expected = Expected(case.loss, case.expected_arrays())
    cmp = compare(answer, expected, args.rtol, case)
    if not loss_given:
        cmp = cmp._replace(errors={k: v for k, v in cmp.errors.items() if k != "loss"})
    if cmp.failing:
        print(mismatch(case, answer, expected, cmp, path=args.case, candidate=program,
                       case_word=f"case {args.case}"))
        return 1
    errs = ", ".join(f"{k} {v:.1e}" for k, v in cmp.errors.items())
    if cmp.unjudged:
        print(f"not judged: {', '.join(cmp.unjudged)} differ by more than rtol and this case is "
              "too ill-conditioned to judge them (the round-off model cannot bound the error)")
    every = "every judged answer" if cmp.unjudged else "every answer"
    print(f"match: {every} within rtol {cmp.rtol:.2g} ({answer.dtype}); relative errors: {errs}")
    return 0
