"""Check a PyTorch nn.RNN + nn.Linear, trained with h.detach() every 4 steps, in one call.

    python examples/torch_adapter.py
"""
import torch

import handgrad as hg
from handgrad import adapters

B, T, D, H, O = 4, 12, 3, 8, 2


def main(max_examples: int = 100):
    spec = hg.Spec(activation="tanh", bias=True, output="all", loss="squared",
                   reduction="mean", truncation=hg.Chunks(4))
    rnn = torch.nn.RNN(D, H, batch_first=True).double()      # your model, as you built it
    head = torch.nn.Linear(H, O).double()
    candidate = adapters.from_torch(rnn, spec, head, detach_every=4)
    print(hg.identify(candidate, spec))                       # which truncation it computes
    print(hg.check(candidate, spec, max_examples=max_examples, sizes=(B, T, D, H, O)))
    print(hg.check(candidate, spec, max_examples=max_examples))   # any sizes: the search shrinks


if __name__ == "__main__":
    main()
