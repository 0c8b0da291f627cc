"""`handgrad truncation` (placeholder: being written)."""
HELP = "truncation (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad truncation is not written yet")
