"""`handgrad case` (placeholder: being written)."""
HELP = "case (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad case is not written yet")
