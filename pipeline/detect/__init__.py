"""Detectors: text-prompted boxes (Florence-2). Parsing of model output lives in florence_parse."""
