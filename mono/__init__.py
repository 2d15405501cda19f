"""MonoBeast: single-machine IMPALA with actor processes and shared-memory rollouts.

Run it with `python -m beast.mono --env CartPole-v1`.
"""
