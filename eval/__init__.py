"""Evaluation: drive assist over question sets and report accuracy, citations and deflection."""
