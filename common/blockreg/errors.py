"""Errors shared by every layer: one owner raises, the adapters translate.

A parameter's range is checked where the parameter is used (an algorithm's constructor, a
registration function) and reported as :class:`ParameterError`; the job-spec checks turn it into a
``{"field", "problem"}`` entry, the API into a 422 naming the field, the CLI into exit code 2 naming
the option. Nothing here imports anything but the standard library, so the algorithm layer may
raise it.
"""
from __future__ import annotations

__all__ = ["ParameterError"]


class ParameterError(ValueError):
    """A parameter is out of range or malformed.

    Parameters
    ----------
    field : str
        The parameter's name as the raising function knows it (e.g. ``"maxshift"``); callers that
        know a longer path (``"params.maxshift.1"``) map it.
    problem : str
        A sentence saying what is wrong, without the field name.

    Examples
    --------
    >>> err = ParameterError("maxshift", "must be at least 1, got 0")
    >>> str(err)
    'maxshift: must be at least 1, got 0'
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self):  # picklable across process pools with both attributes
        return (type(self), (self.field, self.problem))
