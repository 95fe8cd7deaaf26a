"""Scaling laws: fitting the Chinchilla and Kaplan laws to (parameters, tokens, loss) points, and the
compute-optimal model size they imply."""
from .fit import ChinchillaFit, PowerLawFit, compute_optimal, fit_chinchilla, fit_power_law, read_points

__all__ = ["ChinchillaFit", "PowerLawFit", "compute_optimal", "fit_chinchilla", "fit_power_law", "read_points"]
