"""oreal_operator: the Kopf operator that reconciles OREALRun resources into pods.

Imported as `oreal_operator`, never as `operator` (that would shadow Python's stdlib module).
"""
