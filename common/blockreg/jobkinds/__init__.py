"""Job kinds: how each registered algorithm appears in a job spec, and how a job builds it.

One module per algorithm, each registering an :class:`~blockreg.registry.AlgorithmEntry`: the
pydantic model of the spec's ``params`` (the shape of the parameters only), the factory that turns
validated params into the algorithm, the grid nodes it works on, and the variables it can monitor.
The algorithms themselves (:mod:`blockreg.algorithms`) know nothing of pydantic or job specs.
"""
