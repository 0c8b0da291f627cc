"""`handgrad compare CASE CANDIDATE`: check an implementation's answers against a case file.

Exit status: 0 every answer matches, 1 a mismatch (the same report as `hg.check`), 2 a bad file.
"""
from __future__ import annotations

HELP = ("check a candidate's loss and gradients file against a case file "
        "(exit 0 match, 1 mismatch, 2 bad file)")


def add_arguments(parser):
    parser.add_argument("case", metavar="CASE", help="a case file written by `handgrad case`")
    parser.add_argument("candidate", metavar="CANDIDATE",
                        help="the implementation's answers: grad_U, grad_W, grad_V (grad_b, "
                             "grad_c with bias; grad_h0, loss optional), .npz or .json")
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (default: by the candidate file's dtype, "
                             "1e-7 for float64, 1e-3 for float32)")


def run(args) -> int:
    from ..casefile import read_candidate, read_case, verify_case
    from ..oracle.check import mismatch
    from ..oracle.evaluate import Answer, Expected, compare
    from ..tolerances import TOLERANCES

    if args.rtol is not None and not 0 < args.rtol < 1:
        raise ValueError(f"--rtol must be in (0, 1), got {args.rtol}")
    case = read_case(args.case)
    verify_case(args.case, case, TOLERANCES["jax"])
    cand = read_candidate(args.candidate, case)
    expected = Expected(case.loss, case.expected_arrays())
    loss = case.loss if cand.loss is None else cand.loss
    answer = Answer(loss, cand.grads, cand.dtype)
    cmp = compare(answer, expected, args.rtol, case)
    if cand.loss is None:
        cmp = cmp._replace(errors={k: v for k, v in cmp.errors.items() if k != "loss"})
    if cmp.failing:
        print(mismatch(case, answer, expected, cmp, path=args.case,
                       case_word=f"case {args.case}"))
        return 1
    errs = ", ".join(f"{k} {v:.1e}" for k, v in cmp.errors.items())
    print(f"match: every answer within rtol {cmp.rtol:.0e} ({cand.dtype}); relative errors: {errs}")
    return 0
