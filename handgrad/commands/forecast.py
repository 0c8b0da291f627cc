"""`handgrad forecast` (placeholder: being written)."""
HELP = "forecast (not written yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("handgrad forecast is not written yet")
