"""Membership inference attacks and their metrics. Works on model outputs only: numpy, scipy, scikit-learn; no torch."""
