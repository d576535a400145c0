"""Registration algorithms behind one interface (:class:`Algorithm`), the seed's "workers"."""
from .base import Algorithm, ArrayDecl

__all__ = ["Algorithm", "ArrayDecl", "Apertures"]


def __getattr__(name):
    # Apertures pulls in the whole reg/ stack; import it only when asked for.
    if name == "Apertures":
        from .apertures import Apertures

        return Apertures
    raise AttributeError(f"module 'blockreg.algorithms' has no attribute {name!r}")
