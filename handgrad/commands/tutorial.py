"""`handgrad tutorial` (placeholder: being written)."""
HELP = "tutorial (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad tutorial is not written yet")
