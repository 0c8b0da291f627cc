"""`handgrad compare` (placeholder: being written)."""
HELP = "compare (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad compare is not written yet")
