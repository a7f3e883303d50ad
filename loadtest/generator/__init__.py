"""The load generator: synthetic transactions sent over TCP in each channel's own wire
format (open loop at a planned rate, closed loop at saturation), measured and reported.

A client of the switch: it imports protocols/ and nothing of switch/ or loadtest.harness
(tests/test_layering.py checks it).
"""
