"""Hedge: hedged requests for tail latency, and the bounded latency-quantile estimator."""

from resilient.hedge._hedge import Hedge as Hedge
from resilient.hedge._quantile import QuantileEstimator as QuantileEstimator

__all__ = ("Hedge", "QuantileEstimator")
