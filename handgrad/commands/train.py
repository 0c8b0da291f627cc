"""`handgrad train` (placeholder: being written)."""
HELP = "train (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad train is not written yet")
