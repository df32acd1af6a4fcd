"""oreal: OREAL (Outcome REwArd-based reinforcement Learning) for math reasoning.

The library that runs inside every pod (rollout, verifier, trainer) and behind the
`oreal` command line. The Kopf operator lives in the separate package `oreal_operator`.
"""

__version__ = "0.1.0"
