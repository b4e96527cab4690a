"""Anomaly scoring on a plant node: features, detectors, diagnosis (see ``_engine``)."""

from ._baseline import Baseline, learn_baseline
from ._detector import Batch, Detector, Scores
from ._diagnosis import ACTIONS, Finding, diagnose
from ._engine import DETECTORS, EngineConfig, FrameResult, Retrain, ScoringEngine
from ._features import FEATURE_SET, FeatureSet, Frame, FrameAssembler, SampleRef

__all__ = [
    "ACTIONS",
    "DETECTORS",
    "FEATURE_SET",
    "Baseline",
    "Batch",
    "Detector",
    "EngineConfig",
    "FeatureSet",
    "Finding",
    "Frame",
    "FrameAssembler",
    "FrameResult",
    "Retrain",
    "SampleRef",
    "Scores",
    "ScoringEngine",
    "diagnose",
    "learn_baseline",
]
