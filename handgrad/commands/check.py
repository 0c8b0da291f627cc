"""`handgrad check` (placeholder: being written)."""
HELP = "check (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad check is not written yet")
