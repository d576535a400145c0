"""Registers ``"slow-mean-shift"`` on import: the toy algorithm taking ``SLOW_FRAME_S`` per frame.

For tests that need a job to run long on real workers (the fairness test of issue 8): its frames
cost wall time, not CPU, so the test measures the scheduling, not the machine's load.
"""
import time

from blockreg.registry import AlgorithmEntry, register_algorithm

from helpers.service_fakes import MEAN_SHIFT, MeanShiftAlgorithm

SLOW_FRAME_S = 0.1


class SlowMeanShift(MeanShiftAlgorithm):
    def run_frame(self, frame, t, wanted):
        time.sleep(SLOW_FRAME_S)
        return super().run_frame(frame, t, wanted)


SLOW_MEAN_SHIFT = AlgorithmEntry(
    name="slow-mean-shift",
    params=MEAN_SHIFT.params,
    build=lambda params, fixed, nodes, preprocess: SlowMeanShift(fixed, nodes, preprocess),
    nodes=MEAN_SHIFT.nodes,
    variables=MEAN_SHIFT.variables,
    summary="test double: the toy algorithm, SLOW_FRAME_S per frame",
)

register_algorithm(SLOW_MEAN_SHIFT, replace=True)
