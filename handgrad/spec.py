"""What model and which gradient: the `Spec` and the truncation conventions.

A truncation is a small frozen value object. Every convention is a special case of
Williams & Peng's `TBPTT(k1, k2)`; `segments` turns one into the list of backward sweeps the
hand-derived BPTT (and the numerical surrogate, and the JAX reference) run.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUTS = ("last", "all")
LOSSES = ("half_squared", "squared", "cross_entropy", "linear")
REDUCTIONS = ("sum", "mean", "batch_mean")
CELLS = ("elman", "gru", "lstm")
GRU_RESETS = ("after", "before")


def _check_int(name: str, value, lowest: int) -> int:
    """`value` as a plain int (numpy integers accepted); ValueError unless an integer >= lowest."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TBPTT:
    """Every `k1` steps, backpropagate `k2` steps (Williams & Peng 1990), 1 <= k1 <= k2.

    The loss at step t, with tau(t) = k1 * ceil(t / k1) (the end of its chunk, not clamped at T),
    reaches h_j only for j >= tau(t) - k2; h_{tau(t) - k2} is held constant when
    tau(t) - k2 >= 1. So a short last chunk reaches k2 - k1 steps before its own start, like
    every other chunk.
    """

    k1: int
    k2: int

    def __post_init__(self):
        object.__setattr__(self, "k1", _check_int("TBPTT k1", self.k1, 1))
        object.__setattr__(self, "k2", _check_int("TBPTT k2", self.k2, 1))
        if self.k2 < self.k1:
            raise ValueError(f"TBPTT needs k1 <= k2, got k1={self.k1}, k2={self.k2}")

    def as_tbptt(self) -> "TBPTT":
        return self

    def __repr__(self) -> str:
        return f"TBPTT({self.k1}, {self.k2})"


@dataclass(frozen=True)
class Window:
    """The loss at step t reaches steps max(1, t - k)..t: k recurrent transitions.

    This is `bptt_truncate=k` of the tutorial and of the classic RNN language-model tutorials;
    it equals `TBPTT(1, k + 1)`.
    """

    k: int

    def __post_init__(self):
        object.__setattr__(self, "k", _check_int("Window k", self.k, 0))

    def as_tbptt(self) -> TBPTT:
        return TBPTT(1, self.k + 1)

    def __repr__(self) -> str:
        return f"Window({self.k})"


@dataclass(frozen=True)
class Chunks:
    """The hidden state is detached every k steps (after steps k, 2k, ...), exactly PyTorch's
    `h = h.detach()` every k steps, also when k does not divide T; equals `TBPTT(k, k)`."""

    k: int

    def __post_init__(self):
        object.__setattr__(self, "k", _check_int("Chunks k", self.k, 1))

    def as_tbptt(self) -> TBPTT:
        return TBPTT(self.k, self.k)

    def __repr__(self) -> str:
        return f"Chunks({self.k})"


Truncation = Optional[Union[Window, Chunks, TBPTT]]


@dataclass(frozen=True)
class Spec:
    """One member of the RNN family and the gradient convention to compute.

    The defaults are plain full BPTT of a tanh Elman RNN with biases, an output head and a loss
    at every step; `Spec.tutorial()` is the 2019 tutorial's model. The first six fields keep
    their positions (`Spec("sigmoid", False, "last", ...)` still works); the rest are keywords.
    """

    activation: str = "tanh"      # Elman nonlinearity: "sigmoid" | "tanh" | "relu" | "identity"
    bias: bool = True             # with biases (b, c; b_ih, b_hh, c for gated cells)
    output: str = "all"           # "last": loss on o_T only (many-to-one); "all": on every o_t
    loss: str = "half_squared"    # "half_squared" | "squared" | "cross_entropy" | "linear"
    reduction: str = "sum"        # "sum" | "mean" (PyTorch's) | "batch_mean" (sum / B)
    truncation: Truncation = None  # None (full BPTT) | Window(k) | Chunks(k) | TBPTT(k1, k2)
    head: bool = True             # o_t = V h_t + c; False: no output layer, o_t = h_t (O = H)
    cell: str = "elman"           # "elman" | "gru" | "lstm"
    gru_reset: str = "after"      # GRU only: reset gate "after" (PyTorch) or "before" the product

    def __post_init__(self):
        for field, allowed in (("activation", ACTIVATIONS), ("output", OUTPUTS),
                               ("loss", LOSSES), ("reduction", REDUCTIONS), ("cell", CELLS),
                               ("gru_reset", GRU_RESETS)):
            value = getattr(self, field)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"Spec.{field} must be one of {', '.join(map(repr, allowed))}, "
                                 f"got {value!r}")
        for field in ("bias", "head"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"Spec.{field} must be True or False, got {getattr(self, field)!r}")
        if self.truncation is not None and not isinstance(self.truncation, (Window, Chunks, TBPTT)):
            raise ValueError("Spec.truncation must be None, Window(k), Chunks(k) or TBPTT(k1, k2), "
                             f"got {self.truncation!r}")
        if self.cell != "elman" and self.activation != "tanh":
            raise ValueError(f"Spec.activation must stay 'tanh' (its default) for cell={self.cell!r}: "
                             f"gates are sigmoid and candidates tanh; got {self.activation!r}")
        if self.cell != "gru" and self.gru_reset != "after":
            raise ValueError(f"Spec.gru_reset applies to cell='gru' only; leave it at 'after' for "
                             f"cell={self.cell!r}, got {self.gru_reset!r}")

    @classmethod
    def tutorial(cls) -> "Spec":
        """The tutorial's model: sigmoid, no biases, many-to-one, 1/2 squared error, Window(5)."""
        return cls(activation="sigmoid", bias=False, output="last", loss="half_squared",
                   reduction="sum", truncation=Window(5))

    def to_dict(self) -> dict:
        """A JSON-ready description (used by case files and metrics)."""
        return {"activation": self.activation, "bias": self.bias, "output": self.output,
                "loss": self.loss, "reduction": self.reduction,
                "truncation": truncation_to_dict(self.truncation), "head": self.head,
                "cell": self.cell, "gru_reset": self.gru_reset}

    @classmethod
    def from_dict(cls, data) -> "Spec":
        """Inverse of `to_dict`; raises ValueError naming the field that is wrong. The fields
        added in version 2 (`head`, `cell`, `gru_reset`) may be absent: files written before them
        mean their defaults. The version 1 fields are required."""
        if not isinstance(data, dict):
            raise ValueError(f"spec must be a JSON object, got {type(data).__name__}")
        required = {"activation", "bias", "output", "loss", "reduction", "truncation"}
        known = required | {"head", "cell", "gru_reset"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"spec has unknown field(s) {unknown}; expected {sorted(known)}")
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"spec is missing field(s) {missing}")
        fields = {k: v for k, v in data.items() if k != "truncation"}
        return cls(**fields, truncation=truncation_from_dict(data["truncation"]))

    @property
    def gated(self) -> bool:
        """True for the GRU and the LSTM (parameters are `GatedParams`)."""
        return self.cell != "elman"


def truncation_to_dict(truncation: Truncation):
    if truncation is None:
        return None
    if isinstance(truncation, TBPTT):
        return {"kind": "TBPTT", "k1": truncation.k1, "k2": truncation.k2}
    return {"kind": type(truncation).__name__, "k": truncation.k}


def truncation_from_dict(data) -> Truncation:
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("kind") not in ("Window", "Chunks", "TBPTT"):
        raise ValueError("spec.truncation must be null or an object with kind "
                         f"'Window', 'Chunks' or 'TBPTT', got {data!r}")
    kind = data["kind"]
    names = ("k1", "k2") if kind == "TBPTT" else ("k",)
    if set(data) != {"kind", *names}:
        raise ValueError(f"spec.truncation of kind {kind} needs exactly the fields {list(names)}, "
                         f"got {sorted(set(data) - {'kind'})}")
    cls = {"Window": Window, "Chunks": Chunks, "TBPTT": TBPTT}[kind]
    return cls(*(data[n] for n in names))


def parse_truncation(text: str) -> Truncation:
    """Parse 'full', 'none', 'window:5', 'chunks:10' or 'tbptt:2,6' (the CLI's syntax)."""
    if not isinstance(text, str):
        raise ValueError(f"truncation must be a string such as 'full', 'window:5', 'chunks:10' or "
                         f"'tbptt:2,6', got {type(text).__name__}")
    t = text.strip().lower().replace(" ", "")
    if t in ("full", "none"):
        return None
    kind, _, args = t.partition(":")
    try:
        numbers = [int(a) for a in args.split(",")] if args else []
    except ValueError:
        numbers = None
    shapes = {"window": (Window, 1), "chunks": (Chunks, 1), "tbptt": (TBPTT, 2)}
    if kind not in shapes or numbers is None or len(numbers) != shapes[kind][1]:
        raise ValueError(f"truncation must be 'full', 'window:K', 'chunks:K' or 'tbptt:K1,K2', "
                         f"got {text!r}")
    return shapes[kind][0](*numbers)


class Segment(NamedTuple):
    """One backward sweep: the loss terms at steps first..last (1-based) share one cut.

    Their gradient flows back through steps last, last-1, ..., cut+1 and stops at h_cut,
    a constant when cut >= 1; cut == 0 means it reaches the input state h_0.
    """

    first: int
    last: int
    cut: int


def segments(truncation: Truncation, T: int, output: str) -> list[Segment]:
    """The backward sweeps of a truncation convention on a sequence of length T.

    `output="last"` has one loss term (step T), so one sweep; `output="all"` has one sweep per
    chunk: the loss steps sharing tau(t) = k1 * ceil(t / k1). tau is not clamped at T, so the
    sweep of a short last chunk stops at tau - k2 like every other (the contract's definition).
    """
    _check_int("T", T, 1)
    if truncation is not None and not isinstance(truncation, (Window, Chunks, TBPTT)):
        raise ValueError("truncation must be None, Window(k), Chunks(k) or TBPTT(k1, k2), "
                         f"got {truncation!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}")
    if truncation is None:
        k1 = k2 = T
    else:
        tb = truncation.as_tbptt()
        k1, k2 = tb.k1, tb.k2
    if output == "last":
        return [Segment(T, T, max(k1 * math.ceil(T / k1) - k2, 0))]
    out, first = [], 1
    while first <= T:
        tau = k1 * math.ceil(first / k1)                # the end of this chunk (may pass T)
        out.append(Segment(first, min(tau, T), max(tau - k2, 0)))
        first = tau + 1
    return out
